"""The plan for one video split across workers: cuts at keyframes (else decode-accurate), every frame once, the
warm-up before each join, and when ``--split auto`` splits at all."""

from __future__ import annotations

from fractions import Fraction

import pytest

from inference.app.split_plan import (
    AUTO_MIN_SECONDS,
    StreamFrames,
    describe_plan,
    parse_split,
    plan_segments,
    probe_frames,
    segment_seconds,
)
from inference.core.errors import UserError

from .conftest import run_cli, write_vfr_video


def _frames(n: int, gop: int | None, step: int = 1000) -> StreamFrames:
    """``n`` frames ``step`` ticks apart (time base 1/25000: 25 fps for step 1000), a keyframe every ``gop``."""
    pts = [i * step for i in range(n)]
    keys = [p for i, p in enumerate(pts) if gop and i % gop == 0] or [0]
    return StreamFrames(pts, keys, Fraction(1, 25000))


def test_segments_hold_every_frame_once_and_cut_at_keyframes():
    frames = _frames(250, gop=12)  # 10 s at 25 fps, a keyframe every 0.48 s
    segments = plan_segments(frames, 2.0, warmup=5)
    assert sum(s.frames for s in segments) == 250
    assert [s.start_pts for s in segments[1:]] == [s.end_pts for s in segments[:-1]]
    assert segments[-1].end_pts is None
    assert all(s.start_pts in frames.keyframes for s in segments)
    assert all(abs(s.start_seconds - 2.0 * s.index) <= 0.5 for s in segments)
    assert segments[0].warmup == 0 and segments[0].warmup_pts == 0
    assert all(s.warmup == 5 and s.warmup_pts == s.start_pts - 5 * 1000 for s in segments[1:])


def test_without_a_keyframe_near_the_cut_falls_on_the_nearest_frame():
    frames = _frames(100, gop=None)  # one keyframe at the start (a long GOP)
    segments = plan_segments(frames, 1.0, warmup=3)
    assert [s.start_pts for s in segments] == [i * 25000 for i in range(4)]
    assert [s.frames for s in segments] == [25, 25, 25, 25]
    lines = describe_plan(segments, frames, "--split 1")
    assert "4 segments" in lines[0] and "--split 1" in lines[0]
    assert "decode-accurate" in lines[2] and "keyframe" in lines[1]


def test_variable_frame_rate_segments_follow_the_timestamps():
    pts = [0, 1000, 3000, 3500, 7000, 8000, 8100, 12000, 13000, 20000, 21000]
    frames = StreamFrames(pts, pts, Fraction(1, 10000))  # every frame a keyframe
    segments = plan_segments(frames, 0.5, warmup=2)
    assert sum(s.frames for s in segments) == len(pts)
    starts = [s.start_pts for s in segments]
    assert starts == sorted(set(starts)) and set(starts) <= set(pts)


@pytest.mark.parametrize(
    ("split", "seconds", "workers", "splits"),
    [
        ("off", 600.0, 8, False),
        ("auto", 600.0, 1, False),  # one worker: nothing to gain
        ("auto", AUTO_MIN_SECONDS - 1, 8, False),  # too short to pay back
        ("auto", 600.0, 2, True),
        ("auto", 600.0, None, True),  # a Ray cluster
        (10.0, 600.0, 1, True),  # asked for explicitly
        (700.0, 600.0, 4, False),  # longer than the file
    ],
)
def test_when_a_file_is_split(split, seconds, workers, splits):
    length, reason = segment_seconds(split, seconds, workers)
    assert (length is not None) == splits and reason
    if split == "auto" and workers == 2:
        assert length == pytest.approx(600.0 / 8)  # four segments per worker


def test_auto_leaves_cpu_workers_of_one_machine_unsplit():
    # They share the cores one worker already uses (docs/long-videos.md has the measurement).
    length, reason = segment_seconds("auto", 600.0, 2, cpu_only=True)
    assert length is None and "share this machine's cores" in reason
    assert segment_seconds(10.0, 600.0, 2, cpu_only=True)[0] == 10.0  # asked for explicitly
    assert segment_seconds("auto", 600.0, None, cpu_only=True)[0] is not None  # a Ray cluster's hosts are its own


def test_split_values():
    assert parse_split("AUTO") == "auto" and parse_split("off") == "off" and parse_split("12.5") == 12.5
    for bad in ("0", "-3", "nan", "inf", "soon"):
        with pytest.raises(UserError, match="^split: expected auto, off or a segment length"):
            parse_split(bad)


def test_bad_split_flag_is_one_line(model, tmp_path, capsys):
    assert run_cli(tmp_path / "in.mp4", "-m", model, "-o", tmp_path / "o.mp4", "--split", "soon") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: argument --split") and "\n" not in err


def test_probe_reads_every_timestamp_and_keyframe(tmp_path):
    pts = [0, 1, 2, 4, 5, 8, 9, 10, 13, 14, 15, 16]
    src = write_vfr_video(tmp_path / "vfr.mp4", pts, gop=4)
    frames = probe_frames(src)
    assert len(frames.pts) == len(pts)
    ticks = [round(p * frames.time_base * 24) for p in frames.pts]  # the clip's 1/24 s units
    assert ticks == pts
    assert len(frames.keyframes) >= 3 and frames.keyframes[0] == frames.pts[0]
