"""``stylize-video`` with many inputs: planning the outputs, devices, worker processes, skipping and the summary."""

from __future__ import annotations

import os
from pathlib import Path

import av
import pytest
import torch

from inference.app.batch import plan_jobs, video_folder_files, worker_devices
from inference.app.jobs import Job, Outcome
from inference.core.errors import UserError

from .conftest import count_video_frames, run_cli


def _touch(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return [folder / name for name in names]


def test_folder_of_videos_versus_folder_of_frames(tmp_path):
    videos = tmp_path / "videos"
    _touch(videos, "clip10.mp4", "clip2.MOV", "notes.txt", ".clip3.mp4.tmp-abc.mp4")
    assert video_folder_files(videos) == [videos / "clip2.MOV", videos / "clip10.mp4"]  # natural order, no hidden
    assert video_folder_files(_touch(tmp_path / "frames", "f1.png", "f2.png", "extra.mp4")[0].parent) is None
    assert video_folder_files(_touch(tmp_path / "text", "a.txt")[0].parent) is None
    assert video_folder_files(videos / "clip2.MOV") is None


def test_plan_names_outputs_after_inputs(tmp_path):
    videos = _touch(tmp_path / "in", "a.mp4", "b.MKV", "c.ts")[0].parent
    frames = _touch(tmp_path / "shots", "1.png")[0].parent
    photo = _touch(tmp_path, "p.jpg")[0]
    out = tmp_path / "out"
    jobs = plan_jobs([str(videos), str(frames), str(photo)], str(out))
    assert [(j.src.name, j.dst) for j in jobs] == [
        ("a.mp4", out / "a.mp4"),
        ("b.MKV", out / "b.mkv"),
        ("c.ts", out / "c.mp4"),  # not a container we write
        ("shots", out / "shots.mp4"),  # a folder of frames is one sequence
        ("p.jpg", out / "p.jpg"),
    ]
    assert [j.dst.name for j in plan_jobs([str(videos)], str(out), ext=".gif")] == ["a.gif", "b.gif", "c.gif"]
    assert not out.exists()  # planning writes nothing


@pytest.mark.parametrize(
    ("inputs", "output", "message"),
    [
        (["in/a.mp4", "other/a.mp4"], "out", "would both be written to"),
        (["in/a.mp4", "in/b.mp4"], "out.mp4", "-o must be a folder"),
        (["in/a.mp4", "in/b.mp4"], "existing.txt", "-o must be a folder, and this is a file"),
        (["in/a.mp4", "in/b.mp4"], "in", "would replace it"),
        (["in/a.mp4", "in/*.png"], "out", "a quoted glob is one frame sequence"),
    ],
)
def test_plan_refuses_ambiguous_outputs(tmp_path, monkeypatch, inputs, output, message):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "in", "a.mp4", "b.mp4")
    _touch(tmp_path / "other", "a.mp4")
    _touch(tmp_path, "existing.txt")
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        plan_jobs(inputs, output)


def test_worker_devices():
    assert worker_devices("cpu") == ["cpu"]
    assert worker_devices("cpu", workers=2) == ["cpu", "cpu"]
    assert worker_devices(None, "cpu", 3) == ["cpu"] * 3
    with pytest.raises(UserError, match="^devices cpu:2: for several CPU workers use `devices` cpu `workers` N"):
        worker_devices("cpu:2")
    with pytest.raises(UserError, match="invalid device 'gpu7'"):
        worker_devices("cpu,gpu7")
    with pytest.raises(UserError, match="expected devices"):
        worker_devices(" , ")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        assert worker_devices("cuda") == [f"cuda:{i}" for i in range(count)]
        assert worker_devices(None) == [f"cuda:{i}" for i in range(count)]  # every visible GPU by default
        with pytest.raises(UserError, match="no such device"):
            worker_devices(f"cuda:{count}")
    else:
        with pytest.raises(UserError, match="CUDA is not available"):
            worker_devices("cuda")


@pytest.mark.slow
def test_two_clips_and_a_broken_file_on_two_cpu_workers(tmp_path, make_video, model, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    make_video(inputs / "a.mp4", n_frames=5, size=(64, 48))
    make_video(inputs / "b.mkv", n_frames=7, size=(48, 32), audio=False)
    (inputs / "broken.mp4").write_bytes(b"not a video " * 100)
    out = tmp_path / "out"
    assert run_cli(inputs, "-m", model, "-o", out, "--devices", "cpu", "--workers", "2") == 2
    err = capsys.readouterr().err.splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "b.mkv"]  # no partial or hidden temporary file
    assert count_video_frames(out / "a.mp4") == 5 and count_video_frames(out / "b.mkv") == 7
    with av.open(str(out / "a.mp4")) as c:
        assert len(c.streams.audio) == 1
    progress = sorted(line for line in err if line.startswith("["))
    assert len(progress) == 3 and all(line.startswith(("[1/3] ", "[2/3] ", "[3/3] ")) for line in progress), err
    assert any(f"{inputs / 'a.mp4'} -> {out / 'a.mp4'}: 5 frames in" in line and "on cpu" in line for line in progress)
    assert any(f"{inputs / 'broken.mp4'}: failed: " in line for line in progress)
    assert "3 files in" in err[-2] and err[-2].endswith(": 2 written, 0 skipped, 1 failed"), err
    assert err[-1].startswith(f"error: {inputs / 'broken.mp4'}: not a video or image"), err

    # Again with --skip-existing, in this process (one worker): the two outputs are left alone.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = (inputs / "a.mp4", inputs / "b.mkv", "-m", model, "-o", out, "--skip-existing", "--device", "cpu")
    assert run_cli(*again) == 0
    err = capsys.readouterr().err
    assert f"skipped, {out / 'a.mp4'} exists" in err and err.strip().endswith("0 written, 2 skipped, 0 failed")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_existing_outputs_fail_without_overwrite_and_the_rest_goes_on(tmp_path, make_video, model, capsys):
    a = make_video(tmp_path / "a.mp4", n_frames=3, size=(32, 32), audio=False)
    b = make_video(tmp_path / "b.mp4", n_frames=4, size=(32, 32), audio=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"keep me")
    assert run_cli(a, b, "-m", model, "-o", out, "--device", "cpu", "-q") == 2
    err = capsys.readouterr().err
    assert err == f"error: {out / 'a.mp4'}: already exists (use --overwrite to replace it)\n", err  # -q: failures only
    assert (out / "a.mp4").read_bytes() == b"keep me" and count_video_frames(out / "b.mp4") == 4
    assert run_cli(a, b, "-m", model, "-o", out, "--device", "cpu", "-q", "--overwrite") == 0
    assert count_video_frames(out / "a.mp4") == 3


def test_bad_model_fails_before_anything_is_written(tmp_path, make_video, capsys):
    a = make_video(tmp_path / "a.mp4", n_frames=2, size=(32, 32), audio=False)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    for devices in (["--device", "cpu"], ["--devices", "cpu", "--workers", "2"]):
        assert run_cli(a, a.with_name("a.mp4"), tmp_path / "x.mp4", "-m", bad, "-o", tmp_path / "o", *devices) == 2
        assert capsys.readouterr().err.startswith("error: ")
        assert run_cli(a, tmp_path / "x.mp4", "-m", bad, "-o", tmp_path / "o", *devices) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {bad}: ") and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("start_arrived", [True, False])
def test_collector_reports_a_worker_that_died(tmp_path, start_arrived):
    """The worker finished a.mp4, took b.mp4 and was killed. Its "start" for b.mp4 is in the queue, or (SIGKILL right
    after it took the task, before the queue's feeder thread sent it) only its shared claim names b.mp4."""
    import queue

    from inference.app.worker_pool import Collector

    class DeadProcess:
        exitcode = -9

        def is_alive(self) -> bool:
            return False

    jobs = {0: Job(Path("a.mp4"), tmp_path / "a.mp4"), 1: Job(Path("b.mp4"), tmp_path / "b.mp4")}
    reported: dict[int, Outcome] = {}
    results: queue.Queue = queue.Queue()
    results.put(("start", 0, 0))
    results.put(("done", 0, 0, Outcome("written", frames=3, seconds=1.0, device="cpu")))
    if start_arrived:
        results.put(("start", 0, 1))
    collector = Collector(jobs, [DeadProcess()], ["cpu"], lambda i, o: reported.__setitem__(i, o), claims=[1])
    collector.check_workers(results)
    assert reported[0].status == "written"
    assert reported[1].status == "failed" and "the worker on cpu died (exit code -9)" in reported[1].message
    assert not collector.pending


@pytest.mark.gpu
def test_batch_on_every_visible_gpu(tmp_path, make_video, model, capsys):
    clips = [
        make_video(tmp_path / f"c{i}.mp4", n_frames=6, size=(64, 48)) for i in range(max(2, torch.cuda.device_count()))
    ]
    out = tmp_path / "out"
    assert run_cli(*clips, "-m", model, "-o", out, "--workers", "2") == 0
    assert sorted(os.listdir(out)) == sorted(c.name for c in clips)
    assert all(count_video_frames(out / c.name) == 6 for c in clips)
    assert "on cuda:0" in capsys.readouterr().err


def test_bad_encoder_settings_fail_once_before_any_file(tmp_path, make_video, model, capsys):
    a = make_video(tmp_path / "a.mp4", n_frames=2, size=(32, 32), audio=False)
    b = make_video(tmp_path / "b.mp4", n_frames=2, size=(32, 32), audio=False)
    assert run_cli(a, b, "-m", model, "-o", tmp_path / "o", "--device", "cpu", "--preset", "warp-speed") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--preset" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
