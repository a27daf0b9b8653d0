"""``bytes_as_path``: a path that reads as given bytes, for loaders that take only a path, and leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference.core import memory_file
from inference.core.memory_file import bytes_as_path

DATA = bytes(range(256)) * 1000  # 256 kB: more than one pipe or page of writes


def test_the_path_reads_as_the_bytes():
    with bytes_as_path(DATA, suffix=".safetensors") as path:
        assert Path(path).read_bytes() == DATA
        with open(path, "rb") as f:  # a second reader sees the whole content too (loaders may mmap)
            assert f.read() == DATA


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="in-memory files are Linux-only")
def test_on_linux_nothing_is_written_to_disk(monkeypatch):
    def no_temporary_files(*args, **kwargs):
        raise AssertionError("a temporary file was made")

    monkeypatch.setattr(memory_file.tempfile, "mkstemp", no_temporary_files)
    with bytes_as_path(b"abc") as path:
        assert path.startswith("/proc/self/fd/")
        assert Path(path).read_bytes() == b"abc"


def test_without_in_memory_files_a_temporary_file_is_used_and_removed(monkeypatch):
    monkeypatch.delattr(memory_file.os, "memfd_create", raising=False)
    with bytes_as_path(DATA, suffix=".safetensors") as path:
        assert path.endswith(".safetensors") and Path(path).read_bytes() == DATA
    assert not Path(path).exists()


def test_the_temporary_file_is_removed_when_the_reader_fails(monkeypatch):
    monkeypatch.delattr(memory_file.os, "memfd_create", raising=False)
    with pytest.raises(RuntimeError), bytes_as_path(DATA) as path:
        raise RuntimeError("the loader failed")
    assert not Path(path).exists()
