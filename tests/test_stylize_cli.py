"""``stylize-video`` end to end on generated media: timing, audio passthrough, trimming, errors, import hygiene."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from inference.app.cli import main

from .conftest import run_cli


def _audio_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]


def _video(path: Path) -> tuple[list[float], Fraction, float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
        return times, s.average_rate, c.duration / 1e6


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    flags = ("--model", "--overwrite", "--start", "--gif-fps", "--preserve-color", "--precision", "--batch-size")
    for flag in (*flags, "--skip-existing", "--devices", "--workers", "--ext", "--stats"):
        assert flag in text


@pytest.mark.parametrize("fps", [Fraction(24), Fraction(30000, 1001)])
def test_video_keeps_frames_rate_duration_and_audio(tmp_path, make_video, model, fps):
    src = make_video(tmp_path / "in.mp4", n_frames=14, size=(96, 64), fps=fps)
    before = src.read_bytes()
    out = tmp_path / "out.mp4"
    assert run_cli(src, "-m", model, "-o", out, "-q") == 0
    t_in, rate_in, dur_in = _video(src)
    t_out, rate_out, dur_out = _video(out)
    assert len(t_out) == len(t_in) == 14 and rate_out == rate_in == fps
    assert abs(dur_out - dur_in) <= 1 / fps
    assert _audio_packets(out) == _audio_packets(src)  # copied, not re-encoded
    assert src.read_bytes() == before


def test_rotation_kept(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=4, size=(64, 48), rotation=270)
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.mov", "-q") == 0
    with av.open(str(tmp_path / "out.mov")) as c, av.open(str(src)) as d:
        assert next(c.decode(video=0)).rotation == next(d.decode(video=0)).rotation


def test_trim_cuts_video_and_audio(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=24, size=(64, 48), fps=24)
    out = tmp_path / "cut.mkv"
    assert run_cli(src, "-m", model, "-o", out, "--start", "0.25", "--duration", "0.5", "-q") == 0
    t_out, _, _ = _video(out)
    assert len(t_out) == 12
    with av.open(str(src)) as c:
        tb = c.streams.audio[0].time_base
        kept = [bytes(p) for p in c.demux(audio=0) if p.size and 0.25 - 1e-9 <= float(p.pts * tb) < 0.75]
    assert [data for _, data in _audio_packets(out)] == kept  # packet-exact cut, no re-encoding
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        first = next(p for p in c.demux(a) if p.size)
        assert abs(float(first.pts * first.time_base)) < 0.03  # audio starts with the video


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_trim_deep_into_the_input_keeps_exact_audio(tmp_path, make_video, model, ext):
    # --start beyond the audio copier's seek margin: audio is read from a seek point, and still cut exactly.
    src = make_video(tmp_path / f"in{ext}", n_frames=72, size=(32, 32), fps=24)
    out = tmp_path / f"cut{ext}"
    assert run_cli(src, "-m", model, "-o", out, "--start", "2.25", "--duration", "0.5", "-q") == 0
    with av.open(str(src)) as c:
        tb = c.streams.audio[0].time_base
        kept = [bytes(p) for p in c.demux(audio=0) if p.size and 2.25 - 1e-9 <= float(p.pts * tb) < 2.75 - 1e-9]
    assert len(kept) > 10 and [data for _, data in _audio_packets(out)] == kept
    assert len(_video(out)[0]) == 12


def test_gif_and_folder_outputs(tmp_path, make_video, make_image_folder, model):
    src = make_video(tmp_path / "in.mp4", n_frames=10, size=(64, 48), fps=20)
    assert run_cli(src, "-m", model, "-o", tmp_path / "o.gif", "--gif-width", "32", "-q") == 0
    with av.open(str(tmp_path / "o.gif")) as c:
        frames = list(c.decode(video=0))
        assert len(frames) == 10 and frames[0].width == 32 and abs(c.duration / 1e6 - 0.5) <= 0.05 + 0.01
    folder = make_image_folder(tmp_path / "frames", 3, size=(179, 321))
    assert run_cli(folder, "-m", model, "-o", tmp_path / "styled", "-q") == 0
    assert sorted(p.name for p in (tmp_path / "styled").iterdir()) == [f"frame_00000{i}.png" for i in (1, 2, 3)]
    assert run_cli(str(folder / "*.png"), "-m", model, "-o", tmp_path / "g.mp4", "--fps", "12", "-q") == 0
    assert _video(tmp_path / "g.mp4")[1] == 12


def test_no_overwrite_without_flag(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(64, 48), audio=False)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    assert run_cli(src, "-m", model, "-o", out, "-q") == 2
    assert out.read_bytes() == b"keep me" and "already exists" in capsys.readouterr().err
    assert run_cli(src, "-m", model, "-o", out, "-q", "--overwrite") == 0
    assert len(_video(out)[0]) == 3


def test_error_cases_one_line(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(64, 48), audio=False)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello " * 50)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=44100)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    cases = [
        ((tmp_path / "missing.mp4", "-m", model, "-o", tmp_path / "a.mp4"), "no such file"),
        ((not_video, "-m", model, "-o", tmp_path / "a.mp4"), "not a video or image"),
        ((audio_only, "-m", model, "-o", tmp_path / "a.mp4"), "no video stream"),
        ((src, "-m", foreign, "-o", tmp_path / "a.mp4"), "foreign.safetensors"),
        ((src, "-m", tmp_path / "nope.safetensors", "-o", tmp_path / "a.mp4"), "nope.safetensors"),
        ((src, "-m", model, "-o", tmp_path / "a.xyz"), "unsupported output extension"),
        ((src, "-m", model, "-o", tmp_path / "nodir" / "a.mp4"), "does not exist"),
        ((src, "-m", model, "-o", tmp_path / "a.mp4", "--precision", "fp16", "--device", "cpu"), "needs a GPU"),
    ]

    if os.geteuid() != 0:  # root can write anywhere
        cases.append(((src, "-m", model, "-o", readonly / "a.mp4"), "not writable"))
    for args, message in cases:
        assert run_cli(*args, "-q") == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    readonly.chmod(0o700)
    assert not (tmp_path / "a.mp4").exists()


def test_truncated_video_warns_with_count(tmp_path, make_video, model, capsys):
    full = make_video(tmp_path / "full.mkv", n_frames=24, size=(64, 48), audio=False)
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert run_cli(cut, "-m", model, "-o", tmp_path / "out.mp4") == 0
    err = capsys.readouterr().err
    n = len(_video(tmp_path / "out.mp4")[0])
    assert 0 < n < 24 and f"only {n} frames decoded" in err


@pytest.mark.slow  # a second process or a real-time wait: over a second; the quick part stays under a minute
def test_cli_imports_only_the_runtime(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(64, 48))
    code = (
        "import sys\n"
        "from inference.app.cli import main\n"
        f"rc = main([{str(src)!r}, '-m', {str(model)!r}, '-o', {str(tmp_path / 'o.mp4')!r}, '-q', '--device', 'cpu'])\n"
        "banned = [m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'lightning_fabric', 'wandb', 'datasets', 'styletrain')]\n"
        "assert rc == 0 and not banned, banned\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert (tmp_path / "o.mp4").exists()


BAD_VALUES = {
    "--start": ["-1", "nan", "inf", "ten"],
    "--duration": ["0", "-2", "nan", "inf"],
    "--fps": ["0", "-1", "nan", "inf"],
    "--gif-fps": ["0", "nan", "-inf"],
    "--gif-width": ["0", "-8", "1.5", "70000"],
    "--strength": ["-0.1", "1.5", "nan", "inf"],
    "--max-side": ["0", "-8", "1", "nan"],
    "--crf": ["-1", "64", "nan", "20.5"],
    "--size": ["0x10", "10x-2", "nanxnan", "640"],
    "--batch-size": ["0", "-1", "nan"],
    "--workers": ["0", "1.5"],
}


@pytest.mark.parametrize("option", sorted(BAD_VALUES))
def test_numeric_options_are_checked_at_parse_time(tmp_path, make_video, model, capsys, option):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(32, 32), audio=False)
    before = sorted(tmp_path.iterdir())
    for value in BAD_VALUES[option]:
        assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", f"{option}={value}") == 2, value
        err = capsys.readouterr().err
        assert err.startswith("error: argument ") and err.count("\n") == 1, err
        assert option in err and repr(value) in err, err
    assert sorted(tmp_path.iterdir()) == before  # nothing written, not even a temporary file


def test_crf_range_follows_the_encoder_and_options_that_exclude_each_other(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(32, 32), audio=False)
    before = sorted(tmp_path.iterdir())
    cases = [
        (("--crf", "52"), "--crf must be in [0, 51] for libx264, got 52"),
        (("--crf", "60", "--codec", "libx265"), "--crf must be in [0, 51] for libx265"),
        (("--overwrite", "--skip-existing"), "--overwrite and --skip-existing exclude each other"),
        (("--device", "cpu", "--devices", "cpu"), "--device and --devices exclude each other"),
        (("--ext", "mkv"), "--ext names the outputs of a batch"),
    ]
    for extra, message in cases:
        assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", *extra) == 2, extra
        err = capsys.readouterr().err
        assert err == f"error: {message}\n" or (err.startswith(f"error: {message}") and err.count("\n") == 1), err
    assert sorted(tmp_path.iterdir()) == before


def test_max_side_and_strength_at_their_limits(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(64, 48), audio=False)
    out = tmp_path / "small.mp4"
    assert run_cli(src, "-m", model, "-o", out, "--max-side", "2", "--strength", "0", "-q") == 0
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (2, 2)


@pytest.mark.slow
def test_sigterm_removes_the_temporary_output(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=200, size=(256, 192), audio=False)
    out = tmp_path / "out.mkv"
    code = "import sys\nfrom inference.app.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    args = [str(src), "-m", str(model), "-o", str(out), "--device", "cpu", "--preset", "medium"]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.mkv.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # decoding, inference and encoding are under way
        assert proc.poll() is None, "finished before it could be stopped; make the clip longer"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "m.safetensors"]


def _gif_delays(path: Path) -> list[int]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return [frame.info["duration"] for frame in ImageSequence.Iterator(im)]


def test_gif_rate_is_capped_at_50(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=12, size=(48, 32), fps=60, audio=False)
    for extra in [("--gif-fps", "100"), ()]:
        out = tmp_path / f"out{len(extra)}.gif"
        assert run_cli(src, "-m", model, "-o", out, *extra) == 0
        err = capsys.readouterr().err
        assert ("--gif-fps 100 capped at 50" if extra else "resampled to 50 frames/s") in err, err
        delays = _gif_delays(out)
        assert set(delays) == {20} and abs(sum(delays) - 200) <= 20, delays  # 0.2 s of video at 50 frames/s
    assert run_cli(src, "-m", model, "-o", tmp_path / "slow.gif", "--gif-fps", "25", "-q") == 0
    assert set(_gif_delays(tmp_path / "slow.gif")[:-1]) == {40}  # the last frame lasts until the clip ends


def test_stats_flag_is_passed_to_stylize_file(tmp_path, make_video, model, monkeypatch):
    import inference.app.convert

    calls = []

    def fake(stylizer, src, dst, file_options, **_keywords):
        calls.append(file_options)
        return inference.app.convert.StylizeResult(Path(dst), 0, 1.0)

    monkeypatch.setattr(inference.app.convert, "stylize_file", fake)
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(32, 32), audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "a.mp4", "--stats", "-q") == 0
    assert run_cli(src, "-m", model, "-o", tmp_path / "b.mp4", "-q") == 0
    assert run_cli(src, src.with_name("in.mp4"), "-m", model, "-o", tmp_path / "dir", "--stats", "-q") == 2  # collision
    assert run_cli(src, tmp_path / "other.mp4", "-m", model, "-o", tmp_path / "dir", "--stats", "-q") == 0
    assert [c.stats for c in calls] == [True, False, True, True]


@pytest.mark.gpu
def test_cli_turns_on_cudnn_autotuning(tmp_path, make_video, model):
    torch.backends.cudnn.benchmark = False
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(64, 48), audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", "--device", "cuda", "-q") == 0
    assert torch.backends.cudnn.benchmark
