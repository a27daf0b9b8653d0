"""Style and content image loading: modes, bit depths, orientation, huge images and bad files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from inference.errors import MediaError, UserError
from styletrain.data import images
from styletrain.data.images import UnreadableImageError, load_rgb, load_style_image, sha256_of_file


def _check(t: torch.Tensor, h: int, w: int) -> None:
    assert t.shape == (1, 3, h, w) and t.dtype == torch.float32
    assert 0.0 <= t.min().item() and t.max().item() <= 1.0


def test_rgb_jpeg_and_png_round_trip(tmp_path, make_image):
    arr = make_image(40, 60)
    Image.fromarray(arr).save(tmp_path / "a.png")
    t = load_style_image(tmp_path / "a.png")
    _check(t, 40, 60)
    assert torch.equal((t[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(arr))
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    _check(load_style_image(tmp_path / "a.jpg"), 40, 60)


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr", "RGBA", "LA"])
def test_modes_become_rgb(tmp_path, make_image, mode):
    img = Image.fromarray(make_image(32, 48)).convert(mode)
    path = tmp_path / f"x.{'tif' if mode in ('CMYK', 'YCbCr') else 'png'}"
    img.save(path)
    t = load_style_image(path)
    _check(t, 32, 48)
    if mode in ("L", "1"):
        assert torch.equal(t[0, 0], t[0, 1]) and torch.equal(t[0, 1], t[0, 2])


def test_cmyk_jpeg(tmp_path, make_image):
    Image.fromarray(make_image(32, 48)).convert("CMYK").save(tmp_path / "c.jpg")
    _check(load_style_image(tmp_path / "c.jpg"), 32, 48)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # fully transparent
    rgba[0, 2, 3] = 128  # half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    t = load_style_image(tmp_path / "a.png")[0] * 255
    assert t[:, 0, 0].round().tolist() == [200, 0, 0]
    assert t[:, 0, 1].round().tolist() == [255, 255, 255]
    half = t[:, 0, 2].round().tolist()
    assert half[0] == pytest.approx(228, abs=2) and half[1] == pytest.approx(127, abs=2)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (6, 4), 0)
    img.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.save(tmp_path / "p.png", transparency=0)
    t = load_style_image(tmp_path / "p.png")[0] * 255
    assert t[:, 0, 0].round().tolist() == [250, 0, 0]
    assert t[:, 1, 1].round().tolist() == [255, 255, 255]  # palette index 0 is transparent -> white


def test_16_bit_png_is_scaled_not_truncated(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 1000]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    t = load_style_image(tmp_path / "g16.png")[0, 0, 0] * 255
    assert t.round().tolist() == [0, 128, 255, 4]


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[0, 0] = 255  # a white top-left pixel
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.png", exif=exif)
    t = load_style_image(tmp_path / "o.png")
    _check(t, 40, 20)
    assert t[0, :, 0, -1].tolist() == [1.0, 1.0, 1.0]  # top-left moved to the top-right
    assert load_rgb(tmp_path / "o.png").shape == (40, 20, 3)


def test_max_side_downscales_but_never_upscales(tmp_path, make_image):
    Image.fromarray(make_image(200, 300)).save(tmp_path / "a.png")
    _check(load_style_image(tmp_path / "a.png", max_side=100), 67, 100)
    _check(load_style_image(tmp_path / "a.png", max_side=1000), 200, 300)
    _check(load_style_image(tmp_path / "a.png", max_side=None), 200, 300)


def test_decompression_bomb_guard_is_lifted_for_the_style_image_only(tmp_path, monkeypatch, make_image):
    Image.fromarray(make_image(100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 is now "a bomb" (> 2x the limit) for Pillow
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "big.png")
    _check(load_style_image(tmp_path / "big.png", max_side=50), 50, 50)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    with pytest.raises(UnreadableImageError, match="decompression-bomb"):
        load_rgb(tmp_path / "big.png")  # content images keep Pillow's guard
    monkeypatch.setattr(images, "MAX_STYLE_PIXELS", 5000)
    with pytest.raises(UserError, match=r"big.png: image is 100x100, more than the 5000 pixels"):
        load_style_image(tmp_path / "big.png")


@pytest.mark.slow
def test_a_20000_pixel_square_style_image_is_resized(tmp_path):
    img = Image.linear_gradient("L").resize((20000, 20000), Image.Resampling.NEAREST)
    img.save(tmp_path / "huge.png", compress_level=1)
    del img
    t = load_style_image(tmp_path / "huge.png", max_side=512)
    _check(t, 512, 512)
    assert t[0, 0, 0].mean() < 0.05 and t[0, 0, -1].mean() > 0.95  # the gradient survives


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "style image not found"),
        (b"hello, I am text", "not an image Pillow can identify"),
        ("truncated", "cannot read style image"),
        ("dir", "not a file"),
    ],
)
def test_bad_style_files_give_one_line_errors(tmp_path, make_image, content, message):
    path = tmp_path / "style.jpg"
    if content == "truncated":
        Image.fromarray(make_image(64, 64)).save(path, quality=90)
        path.write_bytes(path.read_bytes()[:300])
    elif content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as info:
        load_style_image(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_sha256_of_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_of_file(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    with pytest.raises(UserError, match="cannot read"):
        sha256_of_file(tmp_path / "missing")


def test_load_rgb_paths_bytes_and_errors(tmp_path, make_image):
    arr = make_image(30, 50)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (30, 50, 3) and np.array_equal(out, arr)
    assert out.flags.writeable
    assert np.array_equal(load_rgb((tmp_path / "a.png").read_bytes()), arr)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    for bad in (tmp_path / "bad.jpg", tmp_path / "missing.png", b"not an image"):
        with pytest.raises(UnreadableImageError) as info:
            load_rgb(bad)
        assert isinstance(info.value, MediaError) and "\n" not in str(info.value)


def test_load_rgb_min_side_decodes_jpeg_at_reduced_scale(tmp_path, make_image):
    Image.fromarray(make_image(600, 800)).save(tmp_path / "a.jpg")
    assert load_rgb(tmp_path / "a.jpg", min_side=256).shape == (300, 400, 3)  # 1/2 scale keeps both sides >= 256
    assert load_rgb(tmp_path / "a.jpg", min_side=400).shape == (600, 800, 3)
