"""A path that reads as some bytes, for loaders that only take a path.

On Linux the bytes live in an anonymous in-memory file (``memfd_create``) named by ``/proc/self/fd/N``: nothing is
written to disk, and the memory goes with the process even when it is killed (a Ray worker killed while loading left
a temporary file behind in ``/tmp`` each time). Elsewhere a temporary file holds them and is removed afterwards.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def bytes_as_path(data: bytes, suffix: str = "") -> Iterator[str]:
    """Yield a file path whose content is ``data``; valid inside the ``with`` block only.

    Args:
        data: The file's content.
        suffix: Name suffix of the fallback temporary file (e.g. ``".safetensors"``).
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("memory-file" + suffix, os.MFD_CLOEXEC)
        try:
            _write_all(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield path
    finally:
        os.unlink(path)
