"""content_kept: the correlation of an output's edges with its input's (styletrain.output_stats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from styletrain.output_stats import clip_stats, content_kept


def _frames(make_image, n: int = 2, seed: int = 0) -> torch.Tensor:
    images = np.stack([make_image(64, 96, seed=seed + i) for i in range(n)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def test_the_input_itself_and_its_tonal_changes_keep_everything(make_image):
    x = _frames(make_image)
    assert float(content_kept(x, x)) == pytest.approx(1.0, abs=1e-5)
    # Brighter, lower contrast, tinted: the outlines are all still there.
    toned = (0.2 + 0.6 * x) * torch.tensor([1.0, 0.9, 0.7]).view(1, 3, 1, 1)
    assert float(content_kept(x, toned)) > 0.99


def test_flat_and_unrelated_outputs_keep_nothing(make_image):
    x = _frames(make_image)
    assert float(content_kept(x, torch.full_like(x, 0.5))) == 0.0
    other = _frames(make_image, seed=50)  # another picture: texture with no relation to the input
    assert abs(float(content_kept(x, other))) < 0.25


def test_fine_stroke_texture_over_the_content_is_not_counted_as_lost(make_image):
    x = _frames(make_image)
    gen = torch.Generator().manual_seed(0)
    strokes = (x + 0.15 * torch.randn(x.shape, generator=gen)).clamp(0, 1)  # pixel-scale paint texture
    washed = 0.5 + 0.15 * (x - 0.5) + 0.15 * torch.randn(x.shape, generator=gen)  # content faint under texture
    kept, faint = float(content_kept(x, strokes)), float(content_kept(x, washed))
    assert kept > 0.8 and faint < kept - 0.2, (kept, faint)


def test_clip_stats_reports_content_kept_only_with_inputs(make_image):
    frames = [make_image(32, 48, seed=i) for i in range(3)]
    assert "content_kept" not in clip_stats(frames)
    stats = clip_stats(frames, inputs=frames)
    assert stats["content_kept"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        content_kept(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 12))
