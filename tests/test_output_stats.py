"""Contrast and colourfulness: zero for flat or grey frames, known values for simple patterns, shapes checked."""

from __future__ import annotations

import pytest
import torch

from styletrain.output_stats import colourfulness, contrast


def test_flat_frames_have_no_contrast_and_grey_frames_no_colour():
    grey = torch.full((2, 3, 8, 8), 0.4)
    assert float(contrast(grey)) == pytest.approx(0.0, abs=1e-7)
    assert float(colourfulness(grey)) == pytest.approx(0.0, abs=1e-7)


def test_contrast_of_a_black_and_white_checkerboard_is_half():
    board = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2
    frames = board.float().expand(1, 3, 8, 8)
    assert float(contrast(frames)) == pytest.approx(0.5, abs=1e-6)


def test_colourfulness_of_a_uniform_red_frame():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    # rg = 1, yb = 0.5 everywhere: no spread, centre sqrt(1.25).
    assert float(colourfulness(red)) == pytest.approx(0.3 * 1.25**0.5, rel=1e-6)


def test_halving_the_deviation_from_grey_halves_both_statistics():
    torch.manual_seed(0)
    frames = torch.rand(3, 3, 16, 16)
    faded = 0.5 + 0.5 * (frames - 0.5)
    assert float(contrast(faded)) == pytest.approx(0.5 * float(contrast(frames)), rel=1e-5)
    assert float(colourfulness(faded)) == pytest.approx(0.5 * float(colourfulness(frames)), rel=1e-5)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        contrast(torch.rand(3, 8, 8))


def test_grain_sees_the_pixel_grid_and_stroke_detail_the_strokes():
    from styletrain.output_stats import grain, stroke_detail

    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    grid = ((xx + yy) % 2).float().expand(1, 3, 64, 64)  # a one-pixel checkerboard
    strokes = (0.5 + 0.5 * torch.sin(xx / 8 * 2 * torch.pi)).float().expand(1, 3, 64, 64)  # 8-pixel stripes
    assert float(grain(grid)) > 10 * float(grain(strokes))
    assert float(stroke_detail(strokes)) > 10 * float(stroke_detail(grid))
    flat = torch.full((1, 3, 64, 64), 0.4)
    assert float(grain(flat)) == 0 and float(stroke_detail(flat)) < 1e-6
