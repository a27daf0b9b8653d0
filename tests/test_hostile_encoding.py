"""Hostile encoding options: encoder size limits (no native crash), one crf/preset table, NVENC mapping and fallback,
stale temporary files, overflowing blend weights, and option values at and beyond the edges of their ranges."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from inference.app.cli import main
from inference.core import atomic
from inference.core.errors import MediaError, UserError
from inference.io import encoders
from inference.io.encode_options import CRF_RANGES, PRESETS, X264_PRESETS, quality_options
from inference.io.encoder_limits import SIZE_LIMITS, check_size
from inference.io.encoders import check_quality, resolve_encoder
from inference.model.styles import style_weights

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
_CLI = "import sys\nfrom inference.app.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture
def no_nvenc(monkeypatch):
    """This machine without NVENC, whatever its GPU: families resolve to their software encoders."""
    real = encoders.open_failure
    fake = lambda name, *a: "no NVENC" if name.endswith("_nvenc") else real(name, *a)  # noqa: E731
    monkeypatch.setattr(encoders, "open_failure", fake)


def _run_subprocess(*args) -> subprocess.CompletedProcess:
    """The CLI in its own process: a native crash there shows as a signal, not as a dead test run."""
    cmd = [sys.executable, "-c", _CLI, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


# --- class 1: sizes an encoder cannot take are refused before it is called ---------------------------------------


@pytest.mark.slow
def test_tiny_hevc_is_refused_with_one_line_and_leaves_nothing(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(48, 32), audio=False)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = _run_subprocess(src, "-m", model, "-o", tmp_path / "out.mp4", "-q", "--device", "cpu", "--codec", "libx265")
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    last = r.stderr.strip().splitlines()[-1]
    assert last == "error: --codec libx265 needs frames of at least 49x16, got 48x32 (use --size or another --codec)"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no hidden temporary file


def test_size_limits_follow_the_measurement():
    """The table gives exactly the smallest size the subprocess probe measured, for every encoder and format."""
    record = json.loads((ROOT / "bench/results/encoder-limits.json").read_text())
    for name, formats in record["encoders"].items():
        for pix_fmt, found in formats.items():
            width = next(w for w in range(1, 200) if _accepted(name, pix_fmt, w, found["height"]["min"]))
            height = next(h for h in range(1, 200) if _accepted(name, pix_fmt, found["width"]["min"], h))
            assert (width, height) == (found["width"]["min"], found["height"]["min"]), (name, pix_fmt)
    assert set(record["encoders"]) <= set(SIZE_LIMITS)


def _accepted(name: str, pix_fmt: str, width: int, height: int) -> bool:
    try:
        check_size(name, pix_fmt, width, height)
    except UserError:
        return False
    return True


def test_resolve_encoder_checks_the_frame_size(no_nvenc):
    with pytest.raises(UserError, match=r"^codec libx265 needs frames of at least 49x16, got 48x32"):
        resolve_encoder("hevc", ".mp4", 18, "medium", "yuv420p", size=(48, 32))
    with pytest.raises(UserError, match=r"^codec libsvtav1 needs frames of at least 26x26, got 24x24"):
        resolve_encoder("av1", ".mp4", 30, "medium", "yuv420p", size=(24, 24))
    with pytest.raises(UserError, match=r"^codec libx265 needs frames of at least 49x16, got 33x17"):
        resolve_encoder("libx265", ".mkv", 18, "medium", "yuv444p", size=(33, 17))
    with pytest.raises(UserError, match=r"^pix_fmt yuv422p needs width a multiple of 2"):
        resolve_encoder("libx264", ".mp4", 18, "medium", "yuv422p", size=(33, 17))
    assert resolve_encoder("hevc", ".mp4", 18, "medium", "yuv444p", size=(49, 16)).name == "libx265"


@pytest.mark.slow
def test_encoders_at_their_smallest_size_do_not_crash():
    """The probe of bench/encoder_limits.py, at each table minimum, in subprocesses."""
    from bench import encoder_limits as bench

    for name, container, pix_fmts in bench.ENCODERS:
        if not bench.available(name):
            continue
        for pix_fmt in pix_fmts:
            limit, (mw, mh) = SIZE_LIMITS[name], (2, 2) if "420" in pix_fmt else (1, 1)
            w, h = -(-limit.min_width // mw) * mw, -(-limit.min_height // mh) * mh
            assert bench.probe(name, container, pix_fmt, w, h) == "ok", (name, pix_fmt, w, h)


def test_a_crashed_writer_leaves_nothing_for_the_next_run(tmp_path):
    """A process killed natively (abort) while writing leaves its temporary file; the next write removes it, but
    never a live writer's file or another machine's."""
    dst = tmp_path / "out.mp4"
    code = (
        "import os, sys\nfrom inference.core.atomic import atomic_output\n"
        "with atomic_output(sys.argv[1], suffix='.mp4') as tmp:\n    tmp.write_bytes(b'half')\n    os.abort()\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(dst)], capture_output=True, timeout=60)
    assert r.returncode < 0  # killed by SIGABRT, like the heap-corruption abort
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".out.mp4.tmp-"), stale
    dead_pid, host = re.fullmatch(r"\.out\.mp4\.tmp-(\d+)-(.+)~.*", stale[0]).groups()  # pid and host of the writer
    live = tmp_path / f".other.mkv.tmp-{os.getpid()}-{host}~abcd.mkv"
    foreign = tmp_path / f".other.mkv.tmp-{dead_pid}-some-other-host~abcd.mkv"
    live.write_bytes(b"busy")
    foreign.write_bytes(b"busy")
    with atomic.atomic_output(tmp_path / "next.mp4", suffix=".mp4") as tmp:
        tmp.write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, foreign.name, "next.mp4"])


def test_errors_name_the_output_not_its_temporary_file(tmp_path):
    dst = tmp_path / "clip.gif"
    with pytest.raises(MediaError) as info, atomic.atomic_output(dst, suffix=".gif") as tmp:
        raise MediaError(f"{tmp}: cannot build the GIF filter graph")
    assert str(info.value) == f"{dst}: cannot build the GIF filter graph"
    assert list(tmp_path.iterdir()) == []


# --- class 2 and 3: one table for --crf and --preset ----------------------------------------------------------------


def test_crf_range_table_is_what_help_says_and_what_the_check_enforces(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, (lo, hi) in CRF_RANGES.items():
        assert f"{lo}-{hi} for" in help_text and name in help_text
        for crf in (lo, hi):
            assert quality_options(name, crf, "medium")
        for crf in (lo - 1, hi + 1):
            with pytest.raises(UserError, match=rf"^crf must be in \[{lo}, {hi}\] for {name}"):
                quality_options(name, crf, "medium")
    check_quality("av1", ".mp4", 63, "medium")
    check_quality(None, ".webm", 60, "medium")
    with pytest.raises(UserError, match=r"\[0, 51\] for libx265"):
        check_quality("hevc", ".mkv", 52, "medium")


def test_crf_up_to_63_for_vp9_from_the_command_line(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(32, 32), audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.webm", "--crf", "63", "-q", "--device", "cpu") == 0
    with av.open(str(tmp_path / "out.webm")) as c:
        assert c.streams.video[0].codec_context.name == "vp9" and len(list(c.decode(video=0))) == 2


def test_every_preset_maps_onto_each_encoder_scale():
    for name in ("libx264", "libx265", "h264_nvenc", "libvpx-vp9", "libsvtav1", "libaom-av1"):
        mapped = [quality_options(name, 30, p) for p in X264_PRESETS]
        assert len({json.dumps(m, sort_keys=True) for m in mapped}) > 3, name  # the names really change something
    vp9 = PRESETS["libvpx-vp9"]
    assert vp9["ultrafast"] == {"deadline": "realtime", "cpu-used": "8"} and vp9["placebo"]["deadline"] == "best"
    assert quality_options("libsvtav1", 30, "veryslow")["preset"] == "2"
    with pytest.raises(UserError, match="^preset has no equivalent for `codec` mpeg4"):
        quality_options("mpeg4", 18, "veryslow")
    with pytest.raises(UserError, match="^preset 'p4' is not a libvpx-vp9 preset"):
        quality_options("libvpx-vp9", 18, "p4")


def test_vp9_preset_changes_the_encoding(tmp_path, make_video, model):
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(64, 48), audio=False)
    sizes = {}
    for preset in ("ultrafast", "placebo"):
        out = tmp_path / f"{preset}.webm"
        assert run_cli(src, "-m", model, "-o", out, "--preset", preset, "-q", "--device", "cpu") == 0
        sizes[preset] = out.read_bytes()
    assert sizes["ultrafast"] != sizes["placebo"]


# --- NVENC quality mapping and fallback -----------------------------------------------------------------------------


def test_nvenc_crf_zero_is_best_quality_not_automatic():
    assert quality_options("h264_nvenc", 0, "medium")["cq"] == "1"  # cq 0 would mean "automatic"
    assert quality_options("av1_nvenc", 63, "p7") == {"rc": "vbr", "cq": "63", "b": "0", "preset": "p7"}
    with pytest.raises(UserError, match=r"\[0, 51\] for hevc_nvenc"):
        quality_options("hevc_nvenc", 52, "medium")


def _fake_gpu(refuses: set[str], max_side: int = 4096):
    """An ``open_failure`` for a machine whose NVENC opens except for the pixel formats in ``refuses`` or large
    sizes."""

    def open_failure(name, pix_fmt="yuv420p", options=(), size=(256, 256)):
        if not name.endswith("_nvenc"):
            return None
        if pix_fmt in refuses or max(size) > max_side:
            return "Invalid argument"
        return None

    return open_failure


def test_nvenc_gets_its_own_pixel_format_and_falls_back_when_it_refuses(monkeypatch, caplog):
    monkeypatch.setattr(encoders, "open_failure", _fake_gpu(refuses=set()))
    enc = resolve_encoder(None, ".mp4", 18, "medium", "yuv420p10le", size=(1920, 1080))
    assert (enc.name, enc.pix_fmt) == ("h264_nvenc", "p010le")
    assert resolve_encoder("hevc", ".mkv", 18, "medium", "yuvj420p").pix_fmt == "yuv420p"
    monkeypatch.setattr(encoders, "open_failure", _fake_gpu(refuses={"p010le"}))
    with caplog.at_level(logging.WARNING, logger="inference.io.encoders"):
        enc = resolve_encoder("h264", ".mp4", 18, "medium", "yuv420p10le", size=(640, 360))
        assert (enc.name, enc.pix_fmt) == ("libx264", "yuv420p10le")
        enc = resolve_encoder("hevc", ".mp4", 18, "medium", "yuv420p", size=(7680, 4320))
        assert enc.name == "libx265"
    lines = [r.getMessage() for r in caplog.records]
    assert any("h264_nvenc" in m and "libx264 instead" in m for m in lines), lines
    assert any("hevc_nvenc" in m and "7680x4320" in m and "libx265 instead" in m for m in lines), lines
    with pytest.raises(UserError, match="h264_nvenc"):  # An explicit encoder name is never swapped.
        resolve_encoder("h264_nvenc", ".mp4", 18, "medium", "yuv420p10le", size=(640, 360))


# --- class 6: blend weights -----------------------------------------------------------------------------------------


def test_blend_weights_that_would_overflow_are_normalised():
    assert style_weights("a:1e308,b:1e308", ["a", "b"]) == [0.5, 0.5]
    assert style_weights("a:1e308,b:0", ["a", "b", "c"]) == [1.0, 0.0, 0.0]
    assert style_weights("a:5e-324,b:1e-323", ["a", "b"]) == pytest.approx([1 / 3, 2 / 3])
    with pytest.raises(UserError, match="sum to zero"):
        style_weights("a:0,b:0", ["a", "b"])


# --- the wider sweep: every numeric option at and beyond its edges -------------------------------------------------

OUT_OF_RANGE = {
    "--start": ["1e308", "1e10"],
    "--duration": ["1e308", "2e9"],
    "--fps": ["1e-300", "1e308", "0.0009"],
    "--gif-fps": ["1e-300", "0.009"],
    "--size": ["100000x100000", "20000x20000"],
    "--batch-size": ["1e23", "257", "100000000000000000000000"],  # gathered in host RAM before the forward pass
}


@pytest.mark.parametrize("option", sorted(OUT_OF_RANGE))
def test_huge_and_tiny_values_are_refused_at_parse_time(tmp_path, make_video, model, capsys, option):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(32, 32), audio=False)
    for value in OUT_OF_RANGE[option]:
        assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", f"{option}={value}") == 2, value
        err = capsys.readouterr().err
        assert err.startswith(f"error: argument {option}: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "m.safetensors"]


def test_gif_width_beyond_what_ffmpeg_holds_names_the_option(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(48, 32), audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.gif", "--gif-width", "65535") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --gif-width 65535: 65535x43690 is beyond") and ".tmp-" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "m.safetensors"]


def test_edge_rates_give_valid_outputs(tmp_path, make_video, make_image_folder, model):
    frames = make_image_folder(tmp_path / "frames", 3, size=(32, 48))
    out = tmp_path / "ntsc.mp4"
    assert run_cli(frames, "-m", model, "-o", out, "--fps", "29.97", "-q", "--device", "cpu") == 0
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == Fraction(2997, 100) and len(list(c.decode(video=0))) == 3
    src = make_video(tmp_path / "in.mp4", n_frames=4, size=(48, 32), audio=False)
    gif = tmp_path / "slow.gif"
    assert run_cli(src, "-m", model, "-o", gif, "--gif-fps", "0.01", "-q", "--device", "cpu") == 0
    with av.open(str(gif)) as c:
        assert len(list(c.decode(video=0))) == 1


SMALLEST = [
    ("out.mp4", ["--codec", "libx264", "--pix-fmt", "yuv444p", "--size", "1x1"], (1, 1)),
    ("out.mp4", ["--size", "1x1"], (2, 2)),  # 4:2:0: a 1-pixel side is scaled up to 2
    ("out.webm", ["--pix-fmt", "yuv444p", "--size", "1x5"], (1, 5)),
    ("out.mkv", ["--codec", "hevc", "--pix-fmt", "yuv444p", "--size", "49x16"], (49, 16)),
    ("out.mp4", ["--codec", "av1", "--size", "26x26"], (26, 26)),
    ("out.gif", ["--size", "7x1"], (7, 1)),
]


@pytest.mark.parametrize(("name", "extra", "size"), SMALLEST, ids=[" ".join(e) for _, e, _ in SMALLEST])
def test_every_codec_at_its_smallest_and_odd_sizes(tmp_path, make_video, model, name, extra, size, no_nvenc):
    """The whole pipeline (consistency flow included) on frames at each encoder's smallest size."""
    src = make_video(tmp_path / "in.mp4", n_frames=3, size=(64, 48), audio=False)
    out = tmp_path / name
    assert run_cli(src, "-m", model, "-o", out, "-q", "--device", "cpu", *extra) == 0
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 3 and {(f.width, f.height) for f in frames} == {size}


def test_early_check_accepts_what_some_encoder_of_the_family_takes(no_nvenc):
    check_quality("h264", ".mp4", 18, "p4")  # NVENC's own preset names: refused later only if NVENC is not picked
    with pytest.raises(UserError, match="^preset 'p4' is not a libx264 preset"):
        resolve_encoder("h264", ".mp4", 18, "p4", "yuv420p")  # no NVENC on this machine
    with pytest.raises(UserError, match=r"^preset 'bogus' is not a libsvtav1 preset"):
        check_quality("av1", ".mp4", 18, "bogus")
    with pytest.raises(UserError, match="^codec: expected an encoder name or a family"):
        check_quality("", ".mp4", 18, "medium")
    with pytest.raises(UserError, match="^codec aac encodes audio, not video"):
        resolve_encoder("aac", ".mp4", 18, "medium", "yuv420p")


def test_the_writer_codes_frames_in_the_encoders_pixel_format(tmp_path, make_video, monkeypatch):
    """What NVENC gets for yuv420p10le (p010le) travels from the resolved encoder to the stream; shown on the CPU
    with libx264 fed nv12 for a yuv420p output."""
    from inference.io import video_writer
    from inference.io.encode_options import EncodeOptions
    from inference.io.encoders import Encoder
    from inference.io.readers import open_source

    monkeypatch.setattr(video_writer, "resolve_encoder", lambda *a, **k: Encoder("libx264", {"crf": "18"}, "nv12"))
    source = open_source(make_video(tmp_path / "in.mp4", n_frames=2, size=(48, 32), audio=False))
    sink = video_writer.VideoSink(tmp_path / "o.mp4", source.info, EncodeOptions(audio=False))
    try:
        assert sink.stream.pix_fmt == "nv12" and sink.yuv_spec is None  # I420 planes would need another pass
        for frame in source.frames():
            sink.write(frame.array, frame.pts)
        sink.close()
    finally:
        source.close()
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert len(list(c.decode(video=0))) == 2


def test_an_empty_output_path_is_refused_not_read_as_the_current_folder(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(32, 32), audio=False)
    assert run_cli(src, "-m", model, "-o", "") == 2
    assert capsys.readouterr().err == "error: the output path '' is empty\n"


@pytest.mark.parametrize("name", ["libvpx-vp9", "libsvtav1"])
def test_medium_is_the_encoders_ffmpeg_default(name, make_clip_frames, monkeypatch):
    """--preset medium (the default) changes nothing against FFmpeg's own defaults: the same packets."""
    # Quiet, as the encoder probe opens it: SVT-AV1 reads its log level once per process, at its first open, so a
    # banner-printing first open here would make every later open in this process print too.
    monkeypatch.setenv("SVT_LOG", "1")

    def packets(options: dict) -> list[bytes]:
        ctx = av.codec.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 48, "yuv420p", Fraction(1, 25)
        ctx.options = {"crf": "30", **options}
        out = []
        for i, frame in enumerate(make_clip_frames(4, size=(48, 64))):
            f = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            out += [bytes(p) for p in ctx.encode(f)]
        return out + [bytes(p) for p in ctx.encode(None)]

    assert packets({}) == packets(PRESETS[name]["medium"])
    assert packets({}) != packets(PRESETS[name]["ultrafast"])  # and the mapping does reach the encoder


@pytest.mark.parametrize("codec", ["libx265", "libsvtav1"])
def test_an_error_after_the_encoder_probe_is_still_one_line(tmp_path, make_video, model, capfd, codec):
    """x265 and SVT-AV1 print a banner whenever they open (40 lines for SVT-AV1); the probe keeps them quiet."""
    src = make_video(tmp_path / "in.mp4", n_frames=2, size=(64, 48), audio=False)
    (tmp_path / "out.mp4").write_bytes(b"taken")
    encoders.open_failure.cache_clear()  # the probe must really run in this test
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", "--codec", codec, "--device", "cpu") == 2
    err = capfd.readouterr().err
    assert err == f"error: {tmp_path / 'out.mp4'}: already exists (use --overwrite to replace it)\n", err


@pytest.mark.parametrize("ext", [".", "/../../x", "mp4 ", "m/p4"])
def test_batch_ext_must_be_a_plain_extension(tmp_path, make_video, model, capsys, ext):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "a.mp4", n_frames=2, size=(32, 32), audio=False)
    assert run_cli(videos, "-m", model, "-o", tmp_path / "styled", "--ext", ext) == 2
    assert capsys.readouterr().err == f"error: --ext: expected an extension such as mp4, mkv or gif, got {ext!r}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "videos"]
