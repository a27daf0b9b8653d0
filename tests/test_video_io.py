"""Media I/O: readers, writers, timing, rotation, GIF, folders, odd sizes, atomic writes (identity network)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from inference.app.convert import stylize_file
from inference.core.atomic import atomic_output, check_destination
from inference.core.colour import blend, preserve_color, rgb_to_ycbcr, ycbcr_to_rgb
from inference.core.errors import MediaError
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.io.image_reader import list_frames, natural_key
from inference.io.media import Resize
from inference.io.readers import open_source, read_frames


@pytest.fixture
def identity() -> Stylizer:
    return Stylizer(nn.Identity(), RuntimeOptions(device="cpu", batch_size=4))


def test_natural_sort_and_glob(tmp_path, make_image):
    from PIL import Image

    for name in ["frame10.png", "frame2.png", "frame1.png", "notes.txt"]:
        p = tmp_path / name
        if name.endswith(".png"):
            Image.fromarray(make_image(8, 10)).save(p)
        else:
            p.write_text("x")
    assert [p.name for p in list_frames(tmp_path)] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [p.name for p in list_frames(str(tmp_path / "frame1*.png"))] == ["frame1.png", "frame10.png"]
    assert natural_key(Path("a2.png")) < natural_key(Path("a10.png"))


def test_resize_rules():
    assert Resize().target(321, 179) == ((321, 179), False)
    assert Resize(even=True).target(321, 179) == ((320, 178), False)  # cropped, not scaled
    assert Resize(max_side=160, even=True).target(1280, 720) == ((160, 90), True)
    assert Resize(max_side=2000).target(1280, 720) == ((1280, 720), False)  # never enlarges
    # --size is in display orientation: a 90-degree rotated stream is coded the other way round.
    assert Resize(size=(360, 640)).target(1280, 720, rotation=90) == ((640, 360), True)


def test_video_roundtrip_keeps_count_rate_timestamps_and_pixels(tmp_path, make_video, identity):
    src = make_video(tmp_path / "in.mp4", n_frames=12, size=(96, 64), fps=Fraction(30000, 1001))
    out = stylize_file(identity, src, tmp_path / "out.mp4").output
    with av.open(str(src)) as a, av.open(str(out)) as b:
        va, vb = a.streams.video[0], b.streams.video[0]
        assert vb.average_rate == va.average_rate == Fraction(30000, 1001)
        ta = [float(f.pts * f.time_base) for f in a.decode(video=0)]
        tb = [float(f.pts * f.time_base) for f in b.decode(video=0)]
    assert len(ta) == len(tb) == 12
    assert np.allclose(ta, tb, atol=1e-3)
    original = list(read_frames(src))
    styled = list(read_frames(out))
    # Identity network + crf 18 re-encode: close to the decoded input.
    assert np.abs(original[5].astype(int) - styled[5].astype(int)).mean() < 4


def test_variable_frame_rate_timestamps_kept(tmp_path, identity):
    src = tmp_path / "vfr.mkv"
    pts = [0, 40, 80, 200, 240, 400, 410, 450]
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for packet in s.encode(f):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    for ext in ("mkv", "mp4"):
        result = stylize_file(identity, src, tmp_path / f"out.{ext}")
        assert result.warnings == []
        with av.open(str(result.output)) as c:
            times = [round(float(f.pts * f.time_base) * 1000) for f in c.decode(video=0)]
        assert times == pts


def test_rotation_metadata_kept_and_applied_for_images(tmp_path, make_video, identity):
    src = make_video(tmp_path / "rot.mp4", n_frames=4, size=(96, 64), rotation=90)
    out = stylize_file(identity, src, tmp_path / "out.mp4").output
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert (frame.rotation, frame.width, frame.height) == (90, 96, 64)
    # Formats without a rotation tag get upright pixels.
    png = stylize_file(identity, src, tmp_path / "still.png").output
    assert np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(png)).shape == (96, 64, 3)
    folder = stylize_file(identity, src, tmp_path / "frames").output
    assert len(list_frames(folder)) == 4


def test_gif_frame_count_and_duration(tmp_path, make_video, identity):
    src = make_video(tmp_path / "in.mp4", n_frames=12, size=(96, 64), fps=24, audio=False)
    out = stylize_file(identity, src, tmp_path / "out.gif").output
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
        duration = c.duration / 1e6
    assert len(frames) == 12 and frames[0].format.name in ("pal8", "bgra", "rgb8")
    assert abs(duration - 0.5) <= 1 / 24 + 0.01
    small = stylize_file(identity, src, tmp_path / "small.gif", gif_fps=12, gif_width=48).output
    with av.open(str(small)) as c:
        frames = list(c.decode(video=0))
        assert abs(c.duration / 1e6 - 0.5) <= 1 / 12 + 0.01
    assert len(frames) == 6 and (frames[0].width, frames[0].height) == (48, 32)


def test_frames_folder_roundtrip_odd_size_is_exact(tmp_path, make_image_folder, identity):
    src = make_image_folder(tmp_path / "in", 5, size=(179, 321))
    out = stylize_file(identity, src, tmp_path / "out").output
    a, b = list(read_frames(src)), list(read_frames(out))
    assert len(b) == 5 and b[0].shape == (179, 321, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # PNG in, identity, PNG out: lossless
    image = stylize_file(identity, src / "img_000.png", tmp_path / "one.png").output
    assert np.array_equal(next(read_frames(image)), a[0])


def test_odd_size_video(tmp_path, make_image_folder, identity):
    src = make_image_folder(tmp_path / "in", 3, size=(179, 321))
    cropped = stylize_file(identity, src, tmp_path / "out.mp4", fps=10)
    assert any("cropped to 320x178" in w for w in cropped.warnings)
    exact = stylize_file(identity, src, tmp_path / "exact.mkv", pix_fmt="yuv444p", fps=10)
    for path, size in ((cropped.output, (320, 178)), (exact.output, (321, 179))):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert (s.width, s.height) == size and s.average_rate == 10
            assert len(list(c.decode(video=0))) == 3


def test_trim_and_resize(tmp_path, make_video, identity):
    src = make_video(tmp_path / "in.mp4", n_frames=24, size=(96, 64), fps=24)
    out = stylize_file(identity, src, tmp_path / "out.mp4", start=0.25, duration=0.5, max_side=48).output
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (48, 32)
    assert frames[0].pts == 0
    assert abs(float(frames[-1].pts * frames[-1].time_base) - 11 / 24) < 1e-3


def test_input_errors(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        open_source(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="not a video or image"):
        open_source(bad)
    with pytest.raises(MediaError, match="no image files"):
        open_source(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MediaError, match="not a readable image"):
        open_source(broken)


def test_atomic_output_and_destination_checks(tmp_path):
    dst = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with atomic_output(dst, suffix=".mp4") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(dst, suffix=".mp4") as tmp:
        tmp.write_bytes(b"done")
    assert dst.read_bytes() == b"done" and list(tmp_path.iterdir()) == [dst]
    with pytest.raises(MediaError, match="already exists"):
        check_destination(dst, overwrite=False, is_dir=False)
    assert check_destination(dst, overwrite=True, is_dir=False) == dst
    with pytest.raises(MediaError, match="does not exist"):
        check_destination(tmp_path / "nope" / "x.mp4", overwrite=False, is_dir=False)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(MediaError, match="refusing"):
        check_destination(user, overwrite=True, is_dir=True)


def test_color_ops_are_pure_and_correct():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    a0, b0 = a.clone(), b.clone()
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(a)), a, atol=1e-3)
    assert torch.equal(blend(a, b, 0.0), b) and torch.equal(blend(a, b, 1.0), a)
    kept = preserve_color(a, b)
    # Luminance from the stylized frame, chroma from the original (up to clamping at the gamut edge).
    ya, yk = rgb_to_ycbcr(a)[:, 0], rgb_to_ycbcr(kept)[:, 0]
    assert (ya - yk).abs().median() < 0.02
    assert (rgb_to_ycbcr(b)[:, 1:] - rgb_to_ycbcr(kept)[:, 1:]).abs().median() < 0.02
    assert torch.equal(a, a0) and torch.equal(b, b0)
