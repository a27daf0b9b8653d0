"""The media side of the video pipeline: YUV planes to the device and back, colour tags, decoder fallback, encoder
choice and option checks, stage accounting, timestamps of offset and untimed streams, size warnings."""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import inference.io.encoders as encoders
import inference.io.video_reader as video_reader
from inference.app.cli import main
from inference.app.convert import stylize_file
from inference.core.errors import MediaError, UserError
from inference.core.stages import STAGES
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.io.colour_tags import ColourTags
from inference.io.encode_options import quality_options
from inference.io.encoders import resolve_encoder
from inference.io.readers import open_source
from inference.io.video_writer import VideoSink
from inference.io.writers import EncodeOptions

from .conftest import clip_frames


@pytest.fixture
def identity() -> Stylizer:
    return Stylizer(nn.Identity(), RuntimeOptions(device="cpu", backend="torch"))


def _write_tagged(path: Path, n: int = 12, size=(96, 64), matrix="itu709", tags=(1, 1, 1), pix_fmt="yuv420p"):
    """An H.264 clip converted from RGB with ``matrix`` and tagged with ``tags`` (colorspace, primaries, trc)."""
    full = pix_fmt.startswith("yuvj")
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = *size, pix_fmt
        ctx = s.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc = tags
        ctx.color_range = 2 if full else 1
        s.options = {"crf": "10"}
        for rgb in clip_frames(n, size=(size[1], size[0])):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f = f.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range="JPEG" if full else "MPEG")
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


def _planes(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray().astype(np.int16) for f in c.decode(video=0)]


def _plane_error(path: Path, ref: Path) -> float:
    """Mean absolute difference of the I420 samples of two clips with the same frames, in 8-bit levels."""
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(_planes(path), _planes(ref), strict=True)]))


def _tags(path: Path) -> tuple[int, int, int, int]:
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        return int(f.colorspace), int(f.color_primaries), int(f.color_trc), int(f.color_range)


def _bare_transcode(src: Path, dst: Path) -> Path:
    """Decode and re-encode the planes with libx264 at the pipeline's default settings: the round trip's floor."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = inp.streams.video[0].width, inp.streams.video[0].height, "yuv420p"
        s.options = {"crf": "18", "preset": "medium"}
        for f in inp.decode(video=0):
            out.mux(s.encode(av.VideoFrame.from_ndarray(f.to_ndarray(), format="yuv420p")))
        out.mux(s.encode())
    return dst


@pytest.mark.parametrize("planes", [True, False], ids=["yuv-path", "rgb-path"])
def test_bt709_input_keeps_tags_and_colours(tmp_path, identity, planes):
    src = _write_tagged(tmp_path / "in.mp4")
    res = stylize_file(identity, src, tmp_path / "out.mp4", planes=planes)
    assert res.frame_format == ("yuv" if planes else "rgb")
    assert _tags(tmp_path / "out.mp4") == (1, 1, 1, 1)  # BT.709 matrix, primaries, transfer; limited range.
    err = _plane_error(tmp_path / "out.mp4", src)
    floor = _plane_error(_bare_transcode(src, tmp_path / "t.mp4"), src)
    assert err <= floor + 1.5, (err, floor)


def test_untagged_streams_resolve_by_size_and_output_is_tagged(tmp_path, identity):
    assert ColourTags().yuv_spec(1280, 720).matrix == "bt709"
    assert ColourTags().yuv_spec(640, 480).matrix == "bt601"
    assert ColourTags(matrix=1).yuv_spec(640, 480).matrix == "bt709"  # A tag wins over the size rule.
    assert ColourTags().for_output(640, 480) == ColourTags(6, 6, 6, False)
    src = _write_tagged(tmp_path / "sd.mp4", matrix="smpte170m", tags=(2, 2, 2))
    source = open_source(src, planes=True)
    assert source.info.yuv.matrix == "bt601" and not source.info.yuv.full_range
    source.close()
    stylize_file(identity, src, tmp_path / "out.mp4")
    assert _tags(tmp_path / "out.mp4") == (6, 6, 6, 1)


@pytest.mark.parametrize("planes", [True, False], ids=["yuv-path", "rgb-path"])
def test_full_range_input_read_as_full_range(tmp_path, identity, planes):
    src = _write_tagged(tmp_path / "full.mp4", matrix="itu709", pix_fmt="yuvj420p")
    source = open_source(src, planes=True)
    assert source.info.colour.full_range and source.info.yuv.full_range
    first = next(source.frames()).array
    source.close()
    with av.open(str(src)) as c:
        assert np.array_equal(first, next(c.decode(video=0)).to_ndarray())  # Full-range samples, untouched.
    res = stylize_file(identity, src, tmp_path / "out.mp4", planes=planes)
    assert res.frame_format == ("yuv" if planes else "rgb")
    assert _tags(tmp_path / "out.mp4")[3] == 1  # Limited range out.
    with av.open(str(src)) as a, av.open(str(tmp_path / "out.mp4")) as b:
        ins = [f.to_ndarray(format="rgb24", src_colorspace="itu709", src_color_range="JPEG") for f in a.decode()]
        outs = [f.to_ndarray(format="rgb24", src_colorspace="itu709", src_color_range="MPEG") for f in b.decode()]
    err = np.mean([np.abs(x.astype(int) - y).mean() for x, y in zip(ins, outs, strict=True)])
    assert err < 3.0, err


def test_stats_times_every_stage(tmp_path, make_video, identity, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=10, audio=True)
    res = stylize_file(identity, src, tmp_path / "out.mp4", stats=True)
    err = capsys.readouterr().err
    for stage in STAGES:
        assert any(line.startswith(stage + " ") for line in err.splitlines()), stage
    assert "bound by: " in err and "decoder: h264" in err
    busy = res.clock.busy
    assert res.clock.frames == 10 and all(busy[s] > 0 for s in ("decode", "colour", "network", "encode", "mux"))


def test_decoder_falls_back_to_software(tmp_path, make_video, monkeypatch, caplog):
    from av.codec import hwaccel

    src = make_video(tmp_path / "in.mp4", n_frames=4, audio=False)
    real_open = av.open
    asked = []

    def no_nvdec(*args, hwaccel=None, **kwargs):
        if hwaccel is not None:
            asked.append(hwaccel)
            raise av.error.FFmpegError(22, "NVDEC: no device")  # what FFmpeg says when the CUDA device cannot start
        return real_open(*args, **kwargs)

    monkeypatch.setattr(hwaccel, "hwdevices_available", lambda: ["cuda"])  # as if FFmpeg were built with CUDA
    monkeypatch.setattr(av, "open", no_nvdec)
    with caplog.at_level(logging.INFO, logger="inference"):
        source = open_source(src)
        assert len(list(source.frames())) == 4
    assert len(asked) == 1 and "software" in source.decoder
    assert [r.message for r in caplog.records if "decoding with" in r.message] == [
        f"{src}: decoding with {source.decoder}"
    ]


def test_real_nvdec_attempt_decodes_every_frame(tmp_path, make_video):
    """The real FFmpeg asked for NVDEC: on a GPU it decodes there, without one the attempt fails cleanly."""
    src = make_video(tmp_path / "in.mp4", n_frames=4, audio=False)
    source = video_reader.VideoSource(src, hwaccel=True)
    assert len(list(source.frames())) == 4
    assert "software" in source.decoder or torch.cuda.is_available(), source.decoder


def test_nvenc_option_mapping():
    assert quality_options("h264_nvenc", 18, "medium") == {"rc": "vbr", "cq": "18", "b": "0", "preset": "p5"}
    assert quality_options("h264_nvenc", 23, "veryfast")["preset"] == "p2"
    assert quality_options("hevc_nvenc", 0, "p7")["preset"] == "p7"
    with pytest.raises(UserError, match="^preset 'bogus'"):
        quality_options("h264_nvenc", 18, "bogus")
    with pytest.raises(UserError, match=r"^crf must be in \[0, 51\]"):
        quality_options("h264_nvenc", 60, "medium")


def test_encoder_choice_prefers_nvenc_when_it_opens(monkeypatch):
    # Here no NVENC opens: the family and the default resolve to the software encoder.
    assert resolve_encoder(None, ".mp4", 18, "medium", "yuv420p").name == "libx264"
    assert resolve_encoder(None, ".webm", 30, "medium", "yuv420p").name == "libvpx-vp9"
    monkeypatch.setattr(encoders, "open_failure", lambda name, *args: None)  # Pretend every encoder opens (a GPU).
    enc = resolve_encoder(None, ".mp4", 20, "fast", "yuv420p")
    assert enc.name == "h264_nvenc" and enc.options == {"rc": "vbr", "cq": "20", "b": "0", "preset": "p4"}
    assert resolve_encoder("hevc", ".mkv", 20, "fast", "yuv420p").name == "hevc_nvenc"
    assert resolve_encoder("libx264", ".mp4", 20, "fast", "yuv420p").name == "libx264"  # Explicit names are kept.


def test_software_encoders_map_every_quality_flag():
    x265 = resolve_encoder("libx265", ".mp4", 22, "fast", "yuv420p").options
    assert x265 == {"crf": "22", "preset": "fast", "x265-params": "log-level=error"}
    vp9 = resolve_encoder("libvpx-vp9", ".webm", 30, "medium", "yuv420p").options
    assert vp9 == {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "1"}
    with pytest.raises(UserError, match="^crf has no effect with `codec` mpeg4"):
        resolve_encoder("mpeg4", ".mp4", 25, "medium", "yuv420p")
    with pytest.raises(UserError, match=r"^crf must be in \[0, 51\] for libx264"):
        resolve_encoder("libx264", ".mp4", 70, "medium", "yuv420p")


def test_x264_uses_frame_threads_on_every_core(tmp_path, make_video):
    src = open_source(make_video(tmp_path / "in.mp4", n_frames=2, audio=False))
    sink = VideoSink(tmp_path / "o.mp4", src.info, EncodeOptions())
    ctx = sink.stream.codec_context
    assert ctx.thread_type.name == "FRAME" and ctx.thread_count == 0
    sink.abort()
    src.close()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--pix-fmt", "yuv9000p", "--pix-fmt 'yuv9000p' is not a pixel format"),
        ("--pix-fmt", "gray16be", "--pix-fmt gray16be is not supported by libx264"),
        ("--preset", "warp", "--preset 'warp' is not a libx264 preset"),
        ("--codec", "nosuchcodec", "--codec nosuchcodec: no such encoder"),
        ("--codec", "aac", "--codec aac encodes audio, not video"),
    ],
)
def test_bad_encoder_options_fail_before_decoding(tmp_path, make_video, model, capsys, flag, value, message):
    src = make_video(tmp_path / "in.mp4", n_frames=4)
    before = sorted(tmp_path.iterdir())
    try:
        code = main([str(src), "-m", str(model), "-o", str(tmp_path / "out.mp4"), flag, value])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(tmp_path.iterdir()) == before  # Nothing written, not even a temporary file.


def test_sink_constructor_failure_releases_files(tmp_path, make_video, monkeypatch):
    import inference.io.audio as audio

    src = open_source(make_video(tmp_path / "in.mp4", n_frames=2, audio=True))
    opened = []
    real_open = av.open

    class Spy:
        refuse_streams = False

        def __init__(self, c):
            self.c, self.closed = c, False

        def __getattr__(self, name):
            return getattr(self.c, name)

        def add_stream(self, *args, **kwargs):
            if self.refuse_streams:
                raise ValueError("stream broke")
            return self.c.add_stream(*args, **kwargs)

        def close(self):
            self.closed = True
            self.c.close()

    def spy_open(*args, **kwargs):
        opened.append(Spy(real_open(*args, **kwargs)))
        return opened[-1]

    class Broken(audio.AudioCopier):
        def __init__(self, *args, **kwargs):
            raise MediaError("audio broke")

    monkeypatch.setattr(av, "open", spy_open)
    monkeypatch.setattr(audio, "AudioCopier", Broken)
    with pytest.raises(MediaError, match="audio broke"):
        VideoSink(tmp_path / "o.mp4", src.info, EncodeOptions())
    assert len(opened) == 1 and opened[0].closed

    Spy.refuse_streams = True
    with pytest.raises(MediaError, match="stream broke"):
        VideoSink(tmp_path / "o2.mp4", src.info, EncodeOptions())
    assert len(opened) == 2 and opened[1].closed
    src.close()


def _write_offset_ts(path: Path, start_s: float, n: int = 48) -> Path:
    """An MPEG-TS clip at 24 frames/s whose first frame is at ``start_s`` seconds."""
    with av.open(str(path), "w", format="mpegts") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for i, rgb in enumerate(clip_frames(n, size=(64, 96))):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = int(round(start_s * 24)) + i, Fraction(1, 24)
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


@pytest.mark.parametrize("offset", [10.0, 2 / 24])
def test_duration_counts_from_the_stream_start(tmp_path, identity, offset):
    src = _write_offset_ts(tmp_path / "in.ts", offset)
    res = stylize_file(identity, src, tmp_path / "out.mp4", duration=1.0)
    assert res.frames == 24
    with av.open(str(tmp_path / "out.mp4")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    # Without --start the input's timestamps are kept, offset included; with it the output starts at 0.
    assert times[0] == pytest.approx(open_source(src).info.origin or times[0]) and times[0] >= offset - 0.01
    res = stylize_file(identity, src, tmp_path / "cut.mp4", start=0.5, duration=1.0)
    with av.open(str(tmp_path / "cut.mp4")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert res.frames == 24 and times[0] == pytest.approx(0.0, abs=1e-3)


def test_raw_h264_without_timestamps_keeps_frame_spacing_with_start(tmp_path, identity):
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for rgb in clip_frames(48, size=(64, 96)):
            out.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(s.encode())
    res = stylize_file(identity, path, tmp_path / "out.mp4", start=1.0)
    with av.open(str(tmp_path / "out.mp4")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert res.frames == 24
    assert np.allclose(np.diff(times), 1 / 24, atol=2e-3), np.diff(times)[:5]


def test_one_pixel_input_says_scaled_up(tmp_path, identity):
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    res = stylize_file(identity, tmp_path / "dot.png", tmp_path / "dot.mp4")
    assert any("1x1 scaled up to 2x2" in w for w in res.warnings), res.warnings
    with av.open(str(tmp_path / "dot.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (2, 2)


def test_odd_size_request_warns(tmp_path, make_video, identity):
    src = make_video(tmp_path / "in.mp4", n_frames=3, audio=False)
    res = stylize_file(identity, src, tmp_path / "out.mp4", size=(321, 181))
    assert any("`size` 321x181 became 320x180" in w for w in res.warnings), res.warnings
    assert not stylize_file(identity, src, tmp_path / "ok.mp4", size=(320, 180)).warnings


@pytest.mark.gpu
def test_cuda_yuv_path_nvdec_and_nvenc(tmp_path):
    src = _write_tagged(tmp_path / "in.mp4", n=16, size=(256, 144))
    source = open_source(src, planes=True)
    decoder = source.decoder
    source.close()
    if "cuda" in av.codec.hwaccel.hwdevices_available():
        assert "NVDEC" in decoder, decoder
    gpu = Stylizer(nn.Identity(), RuntimeOptions(device="cuda", backend="torch"))
    res = stylize_file(gpu, src, tmp_path / "out.mp4", stats=True)
    assert res.frame_format == "yuv" and res.frames == 16 and _tags(tmp_path / "out.mp4") == (1, 1, 1, 1)
    err = _plane_error(tmp_path / "out.mp4", src)
    floor = _plane_error(_bare_transcode(src, tmp_path / "t.mp4"), src)
    assert err <= floor + 1.5, (err, floor)
    nvenc = encoders.open_failure("h264_nvenc") is None
    assert resolve_encoder(None, ".mp4", 18, "medium", "yuv420p").name == ("h264_nvenc" if nvenc else "libx264")


def test_explicit_nvenc_without_a_gpu_is_one_clear_error(monkeypatch):
    refuse_nvenc = lambda name, *args: "Operation not permitted" if "nvenc" in name else None  # noqa: E731
    monkeypatch.setattr(encoders, "open_failure", refuse_nvenc)
    with pytest.raises(UserError, match="^codec h264_nvenc cannot be opened on this machine"):
        resolve_encoder("h264_nvenc", ".mp4", 18, "medium", "yuv420p")


def test_yuv_path_keeps_rotation_trim_and_audio(tmp_path, make_video, identity):
    src = make_video(tmp_path / "in.mp4", n_frames=48, size=(96, 64), rotation=90, audio=True)
    res = stylize_file(identity, src, tmp_path / "out.mp4", start=0.5, duration=1.0, size=(32, 48), planes=True)
    assert res.frame_format == "yuv" and res.frames == 24
    with av.open(str(tmp_path / "out.mp4")) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (48, 32) and c.streams.audio  # Coded size; displayed rotated as 32x48.
        assert int(next(c.decode(video=0)).rotation) == 90


def test_only_8bit_420_goes_as_planes(tmp_path, identity):
    run = partial(stylize_file, identity, planes=True)
    src = _write_tagged(tmp_path / "444.mp4", n=4, pix_fmt="yuv444p")
    assert run(src, tmp_path / "out.mp4").frame_format == "rgb"
    assert run(src, tmp_path / "out.mkv", pix_fmt="yuv444p").frame_format == "rgb"
    src = _write_tagged(tmp_path / "420.mp4", n=4)
    assert run(src, tmp_path / "a.mp4").frame_format == "yuv"
    assert run(src, tmp_path / "b.mp4", pix_fmt="yuv444p").frame_format == "rgb"
    assert run(src, tmp_path / "c.gif").frame_format == "rgb"
    # Without the argument the CPU keeps the host RGB path; GPUs take the planes.
    assert stylize_file(identity, src, tmp_path / "d.mp4").frame_format == "rgb"
