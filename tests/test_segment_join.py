"""A video split into segments and joined is the single-worker run: the same frames (lossless, stage off), the same
timestamps (variable frame rate), rotation, colour tags and audio; joined without re-encoding, or encoded once more
with the reason in the log when the segments' codec headers differ."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from inference.app.convert import stylize_file
from inference.app.file_options import FileOptions
from inference.app.jobs import load_stylizer
from inference.app.local_executor import LocalExecutor
from inference.app.segment_join import decode_times, join_segments
from inference.app.segment_run import stylize_segment
from inference.app.split_plan import plan_segments, probe_frames
from inference.app.split_run import run_split, segment_folder
from inference.engine.options import RuntimeOptions
from inference.io.encode_options import EncodeOptions
from inference.io.video_reader import VideoSource

from .conftest import run_cli, write_vfr_video

# Variable frame rate: gaps of 1, 2 and 3 frame durations (1/24 s units).
TICKS = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15, 16, 17, 20, 21, 22, 23, 24, 26, 27, 28, 31, 32, 33, 34, 35, 36]


def decoded(path: Path) -> tuple[list[int], list[np.ndarray], list[int], int, int]:
    """``(pts, RGB frames, audio packet pts, rotation, colour matrix)`` of ``path``."""
    import av

    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        pts = [f.pts for f in frames]
        arrays = [f.to_ndarray(format="rgb24") for f in frames]
        rotation, matrix = frames[0].rotation, frames[0].colorspace
    with av.open(str(path)) as container:
        audio = [p.pts for p in container.demux(audio=0) if p.size]
    return pts, arrays, audio, rotation, matrix


def split_file_options(crf: int = 0) -> FileOptions:
    return FileOptions(encode=EncodeOptions(crf=crf, codec="h264"))


def local(model: Path, consistency: float = 0.0):
    """An executor factory: one in-process worker on the CPU."""
    return lambda todo: LocalExecutor(
        str(model), ["cpu"], RuntimeOptions(consistency=consistency), split_file_options()
    )


def test_split_output_is_the_single_run(model, tmp_path):
    src = write_vfr_video(tmp_path / "vfr.mp4", TICKS, gop=4, rotation=90)
    single, joined = tmp_path / "single.mp4", tmp_path / "joined.mp4"
    stylize_file(load_stylizer(str(model), device="cpu"), src, single, encode=EncodeOptions(crf=0))
    frames = probe_frames(src)
    segments = plan_segments(frames, 0.4, warmup=3)
    assert len(segments) >= 3
    assert run_split(src, joined, frames, segments, local(model), file_options=split_file_options()) == 0
    a, b = decoded(single), decoded(joined)
    assert b[0] == a[0] and len(b[0]) == len(TICKS)  # every timestamp, the gaps included
    assert all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=True))  # lossless, stage off: identical
    assert b[2] == a[2] and len(b[2]) > 10  # the same audio packets, once
    assert b[3:] == a[3:] and b[3] == 90  # rotation and colour tags
    assert not segment_folder(joined).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joined.mp4", "m.safetensors", "single.mp4", "vfr.mp4"]


def test_warmup_frames_are_stylized_but_not_written(model, tmp_path):
    src = write_vfr_video(tmp_path / "vfr.mp4", TICKS, gop=4, audio=False)
    segment = plan_segments(probe_frames(src), 0.4, warmup=3)[1]
    result = stylize_segment(load_stylizer(str(model), device="cpu"), src, tmp_path / "s.nut", segment)
    assert (result.frames, result.warmup) == (segment.frames, 3)
    assert not result.output.with_suffix(".mp4").exists()


def test_segments_with_other_codec_headers_are_encoded_once_more(model, tmp_path, caplog):
    src = write_vfr_video(tmp_path / "vfr.mp4", TICKS, gop=4)
    frames = probe_frames(src)
    segments = plan_segments(frames, 0.6, warmup=2)
    stylizer = load_stylizer(str(model), device="cpu")
    # Lossless and lossy H.264 have different profiles, so their SPS differ: packets cannot simply follow each other.
    parts = [
        stylize_segment(stylizer, src, tmp_path / s.file_name, s, FileOptions.build(crf=0 if s.index else 18)).output
        for s in segments
    ]
    source = VideoSource(src)
    source.close()
    with caplog.at_level(logging.WARNING, logger="inference"):
        result = join_segments(parts, tmp_path / "out.mp4", source.info, EncodeOptions())
    assert result.reencoded and "other codec headers" in result.reencoded
    assert "encoded again once" in caplog.text
    pts, _, audio, rotation, _ = decoded(tmp_path / "out.mp4")
    assert len(pts) == len(TICKS) and audio


def test_decode_times_rise_and_never_pass_presentation():
    # Two segments of an encoder with B-frames, in decode order (I P B B | I P B).
    pts = [0, 3, 1, 2, 4, 6, 5]
    dts = decode_times(pts)
    assert all(a < b for a, b in zip(dts, dts[1:], strict=False)) and all(d <= p for d, p in zip(dts, pts, strict=True))
    assert decode_times([0, 5, 7, 9]) == [0, 5, 7, 9]  # no reordering: decoding times are the timestamps


def test_cli_split_in_one_worker(model, tmp_path, capsys):
    src = write_vfr_video(tmp_path / "vfr.mp4", TICKS, gop=4)
    out = tmp_path / "out.mp4"
    assert run_cli(src, "-m", model, "-o", out, "--devices", "cpu", "--split", "0.5", "--consistency", "0") == 0
    err = capsys.readouterr().err
    assert "split into 3 segments" in err and "joined without re-encoding" in err
    assert decoded(out)[0] == decoded(src)[0]


@pytest.mark.parametrize(("extra", "said"), [(["--workers", "2"], "not split"), ([], None)])
def test_auto_splits_only_when_it_pays(model, tmp_path, capsys, extra, said):
    src = write_vfr_video(tmp_path / "vfr.mp4", TICKS[:8], gop=4, audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "o.mp4", "--devices", "cpu", *extra) == 0
    err = capsys.readouterr().err
    assert "split into" not in err
    if said:
        assert f"{src}: {said} (0.4s is short" in err
    else:
        assert "not split" not in err  # the ordinary one-worker run says nothing about splitting


def test_split_refuses_what_it_cannot_honour(model, tmp_path, capsys):
    src = write_vfr_video(tmp_path / "vfr.mp4", TICKS[:8], gop=4, audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "o.mp4", "--split", "0.2", "--start", "0.1") == 2
    assert "--split cannot be combined with --start" in capsys.readouterr().err
    assert run_cli(src, "-m", model, "-o", tmp_path / "o.gif", "--split", "0.2") == 2
    assert "--split cuts a video file into a video output" in capsys.readouterr().err
