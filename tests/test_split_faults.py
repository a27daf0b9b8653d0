"""Faults in a split run: a lost segment is redone alone; an interrupted run leaves nothing behind, or (with
``--skip-existing``) keeps its finished segments, which the next run with ``--skip-existing`` reuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inference.app.file_options import FileOptions
from inference.app.jobs import Outcome
from inference.app.local_executor import LocalExecutor
from inference.app.split_plan import plan_segments, probe_frames
from inference.app.split_run import run_split, segment_folder
from inference.core.errors import Terminated
from inference.engine.options import RuntimeOptions
from inference.io.encode_options import EncodeOptions

from .conftest import count_video_frames, run_cli, write_vfr_video

TICKS = list(range(30))
FILE_OPTIONS = FileOptions(encode=EncodeOptions(crf=0, codec="h264"))


class Flaky:
    """An in-process executor whose segment ``lose`` is lost on the first round (as when its worker is killed);
    it records which segments each round ran, and can stop the run (``stop_after``) like a SIGTERM would."""

    rounds: list[list[int]] = []

    def __init__(
        self, model: Path, todo, *, lose: int | None = None, stop_after: int | None = None, always: bool = False
    ) -> None:
        self.inner = LocalExecutor(str(model), ["cpu"], RuntimeOptions(consistency=0), FILE_OPTIONS)
        self.lose, self.stop_after, self.always = lose, stop_after, always

    def start(self) -> None:
        self.inner.start()

    def run(self, tasks, report) -> None:
        Flaky.rounds.append([i for i, _ in tasks])
        first = len(Flaky.rounds) == 1
        for n, (index, job) in enumerate(tasks):
            if (first or self.always) and index == self.lose:
                report(index, Outcome("failed", f"{job.src}: the worker on cpu died (exit code -9) while stylizing it"))
                continue
            if first and self.stop_after is not None and n == self.stop_after:
                raise Terminated
            self.inner.run([(index, job)], report)

    def close(self) -> None:
        self.inner.close()


def stopping(model: Path):
    """An executor factory whose first round stops (``Terminated``) after two segments are written."""
    return lambda todo: Flaky(model, todo, stop_after=2)


@pytest.fixture
def clip(tmp_path: Path):
    src = write_vfr_video(tmp_path / "in.mp4", TICKS, gop=5)
    frames = probe_frames(src)
    Flaky.rounds = []
    return src, frames, plan_segments(frames, 0.3, warmup=2)


def test_a_lost_segment_is_redone_alone(model, clip, tmp_path):
    src, frames, segments = clip
    assert len(segments) >= 3
    out = tmp_path / "out.mp4"
    status = run_split(
        src, out, frames, segments, lambda todo: Flaky(model, todo, lose=1), file_options=FILE_OPTIONS, quiet=True
    )
    assert status == 0 and count_video_frames(out) == len(TICKS)
    assert Flaky.rounds == [list(range(len(segments))), [1]]


def test_a_segment_lost_every_round_fails_the_run_and_leaves_nothing(model, clip, tmp_path, capsys):
    src, frames, segments = clip
    out = tmp_path / "out.mp4"
    make = lambda todo: Flaky(model, todo, lose=1, always=True)  # noqa: E731
    assert run_split(src, out, frames, segments, make, file_options=FILE_OPTIONS, rounds=2) == 2
    assert Flaky.rounds == [list(range(len(segments))), [1]]
    assert "error: " in capsys.readouterr().err
    assert not out.exists() and not segment_folder(out).exists()


def test_sigterm_leaves_nothing_without_skip_existing(model, clip, tmp_path):
    src, frames, segments = clip
    out = tmp_path / "out.mp4"
    with pytest.raises(Terminated):
        run_split(src, out, frames, segments, lambda todo: Flaky(model, todo, stop_after=1), file_options=FILE_OPTIONS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "m.safetensors"]


def test_an_interrupted_run_is_resumed_with_skip_existing(model, clip, tmp_path):
    src, frames, segments = clip
    out = tmp_path / "out.mp4"
    with pytest.raises(Terminated):
        run_split(src, out, frames, segments, stopping(model), file_options=FILE_OPTIONS, skip_existing=True)
    kept = sorted(segment_folder(out).glob("segment_*.nut"))
    assert [p.name for p in kept] == [segments[0].file_name, segments[1].file_name]
    Flaky.rounds = []
    make = lambda todo: Flaky(model, todo)  # noqa: E731
    assert run_split(src, out, frames, segments, make, file_options=FILE_OPTIONS, skip_existing=True, quiet=True) == 0
    assert Flaky.rounds == [list(range(2, len(segments)))]  # only the unfinished segments ran
    assert count_video_frames(out) == len(TICKS) and not segment_folder(out).exists()


def test_another_plan_does_not_reuse_segments(model, clip, tmp_path):
    src, frames, segments = clip
    out = tmp_path / "out.mp4"
    with pytest.raises(Terminated):
        run_split(src, out, frames, segments, stopping(model), file_options=FILE_OPTIONS, skip_existing=True)
    Flaky.rounds = []
    other = plan_segments(frames, 0.5, warmup=2)
    assert (
        run_split(
            src, out, frames, other, lambda todo: Flaky(model, todo), file_options=FILE_OPTIONS, skip_existing=True
        )
        == 0
    )
    assert Flaky.rounds == [list(range(len(other)))]


@pytest.mark.slow
def test_two_workers_one_killed_mid_segment(model, tmp_path):
    """The real pool: SIGKILL one worker while it stylizes; exit 0, the output complete, the segment redone."""
    src = write_vfr_video(tmp_path / "in.mp4", list(range(240)), gop=12, size=(192, 128), audio=True)
    out = tmp_path / "out.mp4"
    args = [src, "-m", model, "-o", out, "--devices", "cpu", "--workers", "2", "--split", "2", "--consistency", "0.8"]
    cmd = [sys.executable, "-c", "import sys; from inference.app.cli import main; sys.exit(main())", *map(str, args)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        children = _children(proc.pid)
        temporaries = list(segment_folder(out).glob(".segment_*.tmp-*")) if segment_folder(out).is_dir() else []
        if children and temporaries:  # a worker is writing a segment
            owner = int(temporaries[0].name.split(".tmp-")[1].split("-")[0])
            if owner in children:
                os.kill(owner, signal.SIGKILL)
                killed = owner
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    assert killed is not None, err
    assert proc.returncode == 0, err
    assert "redoing only those" in err and "died" in err, err
    assert count_video_frames(out) == 240 and not segment_folder(out).exists()


def _children(pid: int) -> set[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_cli_skip_existing_output_is_left_alone(model, tmp_path, capsys):
    src = write_vfr_video(tmp_path / "in.mp4", TICKS, gop=5, audio=False)
    (tmp_path / "out.mp4").write_bytes(b"x")
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", "--split", "0.3", "--skip-existing") == 0
    assert "already exists, skipped" in capsys.readouterr().err
    assert (tmp_path / "out.mp4").read_bytes() == b"x"
