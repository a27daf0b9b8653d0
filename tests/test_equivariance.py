"""The shift-error measure (styletrain/equivariance.py): exact for equivariant maps, non-zero for aliasing ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from styletrain.equivariance import Transform, equivariance_report, one_pixel_shift_error, resample, shift_error


def _images() -> torch.Tensor:
    torch.manual_seed(0)
    # Smooth random content (a real frame's spectrum falls off; white noise would make every resampler look bad).
    return F.interpolate(torch.rand(1, 3, 24, 32), size=(96, 128), mode="bicubic", align_corners=False).clamp(0, 1)


def _grid_painter(x: torch.Tensor) -> torch.Tensor:
    """An aliasing 'network': 2x2 average pooling, then nearest upsampling (texture glued to a 2-pixel grid)."""
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")


def test_integer_shifts_copy_pixels_exactly() -> None:
    x = _images()
    moved = resample(x, Transform("s", dx=3.0, dy=-2.0))
    assert torch.allclose(moved[..., 6:-6, 6:-6], x[..., 8:-4, 3:-9], atol=1e-5)


def test_an_equivariant_map_has_no_shift_error() -> None:
    x = _images()
    report = equivariance_report(lambda t: t.clamp(0, 1) ** 2, x, stride=2)
    assert set(report) == {"shift_1", "shift_2", "shift_0.25", "shift_0.5", "zoom_1.05", "rotate_2"}
    for name in ("shift_1", "shift_2"):
        assert report[name]["grey"] < 0.01
    assert report["zoom_1.05"]["grey"] < 1.0 and report["rotate_2"]["grey"] < 1.0
    assert one_pixel_shift_error(lambda t: t, x) < 1e-6


def test_a_grid_bound_map_errs_at_odd_shifts_only() -> None:
    x = _images()
    odd, even = (
        shift_error(_grid_painter, x, Transform("shift_1", dx=1.0)),
        shift_error(_grid_painter, x, Transform("shift_2", dx=2.0)),
    )
    assert odd["relative"] > 0.05 and even["grey"] < 0.01
    assert float(one_pixel_shift_error(_grid_painter, x)) > 0.05


def test_images_too_small_for_the_border_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        shift_error(lambda t: t, torch.rand(1, 3, 40, 40), Transform("shift_1", dx=1.0))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        shift_error(lambda t: t, torch.rand(3, 80, 80), Transform("shift_1", dx=1.0))
