"""A refused batch leaves nothing behind, and ``--workers`` never asks for more than the files or the machine allow."""

from __future__ import annotations

import pytest

from inference.app.batch import WORKER_MEMORY, cap_workers
from inference.app.console import setup_logging

from .conftest import run_cli


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("option", "message"),
    [("--precision=fp16", "precision fp16 needs a GPU"), ("--style=nope", "unknown style 'nope'")],
)
def test_a_refused_batch_leaves_no_output_folder(tmp_path, make_video, model, capsys, workers, option, message):
    a = make_video(tmp_path / "a.mp4", n_frames=2, size=(32, 32), audio=False)
    b = make_video(tmp_path / "b.mp4", n_frames=2, size=(32, 32), audio=False)
    out = tmp_path / "styled"
    assert run_cli(a, b, "-m", model, "-o", out, "--devices", "cpu", "--workers", workers, option) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_run_that_writes_nothing_removes_the_folder_it_made(tmp_path, model, capsys):
    broken = [tmp_path / "x.mp4", tmp_path / "y.mp4"]
    for path in broken:
        path.write_bytes(b"not a video")
    out = tmp_path / "styled"
    assert run_cli(*broken, "-m", model, "-o", out, "--device", "cpu") == 2
    assert "0 written, 0 skipped, 2 failed" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()  # A folder that was there before is the user's: it stays.
    assert run_cli(*broken, "-m", model, "-o", out, "--device", "cpu", "-q") == 2
    assert out.is_dir()


@pytest.mark.slow
def test_workers_capped_at_the_files_with_one_line(tmp_path, make_video, model, capsys):
    clips = [make_video(tmp_path / f"{n}.mp4", n_frames=2, size=(32, 32), audio=False) for n in "ab"]
    assert run_cli(*clips, "-m", model, "-o", tmp_path / "o", "--devices", "cpu", "--workers", "1000") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: --workers")]
    assert len(warnings) == 1 and "1000 worker processes lowered to 2 (2 files" in warnings[0], warnings


def test_cap_workers_keeps_every_device_and_respects_cores_and_memory(capsys):
    setup_logging(quiet=False)
    plenty = {"cores": 2, "free_memory": 64 * WORKER_MEMORY}
    assert cap_workers(["cuda:0", "cuda:0", "cuda:1", "cuda:1"], 2, **plenty) == ["cuda:0", "cuda:1"]  # round-robin
    assert cap_workers(["cpu"] * 8, 100, **plenty) == ["cpu", "cpu"]
    assert (
        capsys.readouterr().err.splitlines()[-1] == "warning: --workers: 8 worker processes lowered to 2 (2 CPU cores)"
    )
    assert cap_workers(["cuda:0"] * 8, 100, cores=2, free_memory=3 * WORKER_MEMORY) == ["cuda:0"] * 3
    assert "lowered to 3 (3.0 GiB free memory)" in capsys.readouterr().err
    assert cap_workers(["cuda:0"] * 2, 5, **plenty) == ["cuda:0"] * 2
    assert capsys.readouterr().err == ""  # nothing lowered, nothing said
    assert cap_workers(["cpu"], 1) == ["cpu"]  # this machine's own cores and memory allow one worker


@pytest.mark.parametrize("where", ["input", "output"])
def test_urls_are_refused_with_one_line(tmp_path, model, capsys, where):
    local = tmp_path / "a.mp4"
    local.write_bytes(b"x")
    inputs = [str(local), "s3://bucket/b.mp4"] if where == "input" else [str(local), str(local.with_name("b.mp4"))]
    out = "gs://bucket/styled" if where == "output" else str(tmp_path / "styled")
    assert run_cli(*inputs, "-m", model, "-o", out) == 2
    err = capsys.readouterr().err
    assert "URLs are not read or written directly; mount the bucket" in err and err.count("\n") == 1, err
    assert not (tmp_path / "styled").exists()
