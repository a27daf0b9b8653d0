"""The runtime's one still-image reader (``inference.io.image_reader.read_image``), used by training too: modes,
bit depths, transparency, orientation, the decompression-bomb guard and the resize policy."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from inference.core.errors import MediaError
from inference.io.image_reader import read_image, resize_array
from styletrain.data.content_sources import UnreadableImageError, load_rgb


def _read(path) -> torch.Tensor:
    """``read_image`` as ``[1, 3, H, W]`` in [0, 1], the layout the assertions below use."""
    return torch.from_numpy(read_image(path)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def _check(t: torch.Tensor, h: int, w: int) -> None:
    assert t.shape == (1, 3, h, w) and t.dtype == torch.float32
    assert 0.0 <= t.min().item() and t.max().item() <= 1.0


def test_rgb_jpeg_and_png_round_trip(tmp_path, make_image):
    arr = make_image(40, 60)
    Image.fromarray(arr).save(tmp_path / "a.png")
    t = _read(tmp_path / "a.png")
    _check(t, 40, 60)
    assert torch.equal((t[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(arr))
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    _check(_read(tmp_path / "a.jpg"), 40, 60)


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr", "RGBA", "LA"])
def test_modes_become_rgb(tmp_path, make_image, mode):
    img = Image.fromarray(make_image(32, 48)).convert(mode)
    path = tmp_path / f"x.{'tif' if mode in ('CMYK', 'YCbCr') else 'png'}"
    img.save(path)
    t = _read(path)
    _check(t, 32, 48)
    if mode in ("L", "1"):
        assert torch.equal(t[0, 0], t[0, 1]) and torch.equal(t[0, 1], t[0, 2])


def test_cmyk_jpeg(tmp_path, make_image):
    Image.fromarray(make_image(32, 48)).convert("CMYK").save(tmp_path / "c.jpg")
    _check(_read(tmp_path / "c.jpg"), 32, 48)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # fully transparent
    rgba[0, 2, 3] = 128  # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    t = _read(tmp_path / "a.png")[0] * 255
    assert t[:, 0, 0].round().tolist() == [200, 0, 0]
    assert t[:, 0, 1].round().tolist() == [255, 255, 255]
    half = t[:, 0, 2].round().tolist()
    assert half[0] == pytest.approx(228, abs=2) and half[1] == pytest.approx(127, abs=2)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (6, 4), 0)
    img.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.save(tmp_path / "p.png", transparency=0)
    t = _read(tmp_path / "p.png")[0] * 255
    assert t[:, 0, 0].round().tolist() == [250, 0, 0]
    assert t[:, 1, 1].round().tolist() == [255, 255, 255]  # palette index 0 is transparent -> white


def test_16_bit_png_is_scaled_not_truncated(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    t = _read(tmp_path / "g16.png")[0, 0, 0] * 255
    assert t.round().tolist() == [0, 128, 255, 4]


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[0, 0] = 255  # a white top-left pixel
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.png", exif=exif)
    t = _read(tmp_path / "o.png")
    _check(t, 40, 20)
    assert t[0, :, 0, -1].tolist() == [1.0, 1.0, 1.0]  # top-left moved to the top-right
    assert load_rgb(tmp_path / "o.png").shape == (40, 20, 3)


def test_float_image_in_unit_range_is_scaled(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), mode="F").save(tmp_path / "f.tif")
    assert read_image(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 128, 255]


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header declares ``width x height`` RGB pixels and holds no pixel data (a few bytes on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_decompression_bomb_is_one_line_media_error(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(MediaError) as info:
        read_image(tmp_path / "bomb.png")
    message = str(info.value)
    assert "bomb.png" in message and "decompression-bomb guard" in message and "3600000000 pixels" in message
    assert "\n" not in message
    with pytest.raises(MediaError, match="bomb.png: image is 60000x60000, more than the 1000 pixels accepted"):
        read_image(tmp_path / "bomb.png", max_pixels=1000)


def test_stylize_video_refuses_a_decompression_bomb_with_one_line(tmp_path, capsys):
    from inference.app.cli import main
    from inference.model.artifact import save_artifact
    from inference.model.networks import build_network

    model = save_artifact(
        tmp_path / "m.safetensors", build_network("tiny"), style_name="s", style_sha256="0" * 64, config={},
        temporal=False,
    )  # fmt: skip
    _png_header_only(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "bomb.png"), "-m", str(model), "-o", str(tmp_path / "out.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bomb.png" in err[0] and "decompression" in err[0]
    assert not (tmp_path / "out.png").exists()


def test_read_image_bytes_and_errors(tmp_path, make_image):
    arr = make_image(30, 50)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (30, 50, 3) and np.array_equal(out, arr)
    assert out.flags.writeable and out.flags.c_contiguous
    assert np.array_equal(read_image((tmp_path / "a.png").read_bytes()), arr)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cases = {tmp_path / "bad.jpg": "bad.jpg", tmp_path / "missing.png": "no such file", b"not an image": "identify"}
    for bad, message in cases.items():
        with pytest.raises(MediaError) as info:
            read_image(bad)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_training_content_images_use_the_runtime_reader(tmp_path, make_image):
    arr = make_image(30, 50)
    Image.fromarray(arr).save(tmp_path / "a.png")
    assert np.array_equal(load_rgb(tmp_path / "a.png"), read_image(tmp_path / "a.png"))
    _png_header_only(tmp_path / "bomb.png", 60000, 60000)
    for bad in (tmp_path / "bomb.png", tmp_path / "missing.png", b"not an image"):
        with pytest.raises(UnreadableImageError) as info:  # skipped and counted by the datasets
            load_rgb(bad)
        assert isinstance(info.value, MediaError) and "\n" not in str(info.value)


def test_min_side_decodes_jpeg_at_reduced_scale(tmp_path, make_image):
    Image.fromarray(make_image(600, 800)).save(tmp_path / "a.jpg")
    assert read_image(tmp_path / "a.jpg", min_side=256).shape == (300, 400, 3)  # 1/2 scale keeps both sides >= 256
    assert read_image(tmp_path / "a.jpg", min_side=400).shape == (600, 800, 3)
    assert read_image(tmp_path / "a.jpg", max_side=100).shape == (75, 100, 3)


def test_resize_policy_averages_when_shrinking_and_is_smooth_when_enlarging():
    stripes = np.zeros((4, 8, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: area averaging gives flat grey, no aliasing
    assert np.abs(resize_array(stripes, (4, 2)).astype(int) - 128).max() <= 1
    step = np.zeros((2, 2, 3), np.uint8)
    step[:, 1] = 255
    up = resize_array(step, (8, 2))[0, :, 0].astype(int)
    assert up[0] <= 10 and up[-1] >= 245 and len(set(up.tolist())) > 2  # a ramp, not nearest-neighbour blocks
    assert resize_array(step, (2, 2)) is step
