"""The style image: size limits, huge and tiny styles, bad files and its sha256 (decoding: test_image_reader.py)."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from inference.core.errors import UserError
from inference.core.hashing import sha256_of_file
from styletrain.data import images
from styletrain.data.content_sources import UnreadableImageError, load_rgb
from styletrain.data.images import load_style_image

from .conftest import small_module


def _check(t: torch.Tensor, h: int, w: int) -> None:
    assert t.shape == (1, 3, h, w) and t.dtype == torch.float32
    assert 0.0 <= t.min().item() and t.max().item() <= 1.0


def test_max_side_downscales_but_never_upscales(tmp_path, make_image):
    Image.fromarray(make_image(200, 300)).save(tmp_path / "a.png")
    _check(load_style_image(tmp_path / "a.png", max_side=100), 67, 100)
    arr = make_image(80, 120)
    Image.fromarray(arr).save(tmp_path / "b.png")
    t = load_style_image(tmp_path / "b.png", max_side=None)
    assert torch.equal((t[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(arr))
    _check(load_style_image(tmp_path / "a.png", max_side=1000), 200, 300)
    _check(load_style_image(tmp_path / "a.png", max_side=None), 200, 300)


def test_decompression_bomb_guard_is_lifted_for_the_style_image_only(tmp_path, monkeypatch, make_image):
    Image.fromarray(make_image(200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # 200x200 is now "a bomb" (> 2x the limit) for Pillow
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "big.png")
    _check(load_style_image(tmp_path / "big.png", max_side=100), 100, 100)
    assert Image.MAX_IMAGE_PIXELS == 4000  # restored
    with pytest.raises(UnreadableImageError, match="decompression-bomb"):
        load_rgb(tmp_path / "big.png")  # content images keep Pillow's guard
    monkeypatch.setattr(images, "MAX_STYLE_PIXELS", 5000)
    with pytest.raises(UserError, match=r"big.png: image is 200x200, more than the 5000 pixels"):
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


@pytest.mark.parametrize(("h", "w", "expected"), [(1, 1, (64, 64)), (8, 32, (64, 256)), (64, 64, (64, 64))])
def test_tiny_style_images_are_enlarged_with_a_warning(tmp_path, make_image, h, w, expected):
    Image.fromarray(make_image(h, w)).save(tmp_path / "tiny.png")
    if (h, w) == expected:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a style already large enough is left alone, silently
            _check(load_style_image(tmp_path / "tiny.png"), *expected)
        return
    with pytest.warns(UserWarning, match=rf"tiny.png is only {w}x{h}; enlarged to {expected[1]}x{expected[0]}"):
        t = load_style_image(tmp_path / "tiny.png")
    _check(t, *expected)
    assert min(t.shape[-2:]) == images.MIN_STYLE_SIDE


def test_a_one_pixel_style_trains(tmp_path):
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(tmp_path / "dot.png")
    with pytest.warns(UserWarning, match="enlarged"):
        module = small_module(tmp_path / "dot.png")
    terms = module.loss_terms({"content": torch.rand(1, 3, 32, 32)})
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
