"""Synthetic motion: exact flow, masks, determinism, bounds and devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inference.engine.flow import warp
from styletrain.temporal.motion import MotionConfig, MotionPair, random_motion_pair


def _batch(make_image, b: int = 3, h: int = 48, w: int = 64) -> torch.Tensor:
    imgs = [make_image(h, w, seed=s) for s in range(b)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def test_shapes_dtypes_and_ranges(make_image):
    frames = _batch(make_image)
    before = frames.clone()
    pair = random_motion_pair(frames, torch.Generator().manual_seed(0))
    assert isinstance(pair, MotionPair)
    assert pair.frame1.shape == pair.frame2.shape == frames.shape
    assert pair.flow.shape == (3, 2, 48, 64) and pair.flow.dtype == torch.float32
    assert pair.mask.shape == (3, 1, 48, 64)
    assert set(pair.mask.unique().tolist()) <= {0.0, 1.0}
    assert 0.3 < pair.mask.mean() < 1.0  # most pixels stay visible, some leave the frame
    for f in (pair.frame1, pair.frame2):
        assert f.min() >= 0 and f.max() <= 1
    assert torch.equal(frames, before)  # caller's tensor untouched


def test_warp_of_frame2_reproduces_frame1_inside_mask(make_image):
    frames = _batch(make_image)
    # Without photometric noise the construction is exact: frame1 = warp(frame2, flow) wherever mask == 1.
    pair = random_motion_pair(frames, torch.Generator().manual_seed(1), noise_sigma=(0.0, 0.0), brightness=0.0)
    err = (warp(pair.frame2, pair.flow) - pair.frame1).abs() * pair.mask
    assert err.max() < 1e-5
    # And the flow is not trivial: frame1 differs from frame2 clearly.
    assert (pair.frame1 - pair.frame2).abs().mean() > 0.02


def test_noise_is_small_and_present(make_image):
    frames = _batch(make_image)
    gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    clean = random_motion_pair(frames, gen(), noise_sigma=(0.0, 0.0), brightness=0.0)
    noisy = random_motion_pair(frames, gen())
    assert torch.equal(clean.flow, noisy.flow)
    d = (noisy.frame1 - clean.frame1).std()
    assert 0.0005 < d < 0.004


def test_deterministic_under_seed(make_image):
    frames = _batch(make_image)
    a = random_motion_pair(frames, torch.Generator().manual_seed(7))
    b = random_motion_pair(frames, torch.Generator().manual_seed(7))
    c = random_motion_pair(frames, torch.Generator().manual_seed(8))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.flow, c.flow)


def _max_displacement(cfg: MotionConfig, height: int, width: int) -> float:
    """Upper bound of ``|flow|`` (pixels) that ``cfg`` allows on an image of this size."""
    radius = 0.5 * math.hypot(height - 1, width - 1)
    # |s R(θ) r - r| <= |s e^{iθ} - 1| |r|, largest at the extreme zoom and angle.
    theta = math.radians(cfg.max_rotation_deg)
    zooms = (1 + cfg.max_zoom, 1 - cfg.max_zoom)
    affine = max(abs(complex(s * math.cos(theta), s * math.sin(theta)) - 1) for s in zooms)
    return math.sqrt(2) * (cfg.max_translation + cfg.local_amplitude) + affine * radius


@pytest.mark.parametrize("overrides", [{}, {"max_translation": 4.0, "max_rotation_deg": 0.0, "max_zoom": 0.0}])
def test_flow_magnitude_bounded(make_image, overrides):
    frames = _batch(make_image, b=8)
    cfg = MotionConfig(**overrides)
    pair = random_motion_pair(frames, torch.Generator().manual_seed(3), config=cfg)
    bound = _max_displacement(cfg, 48, 64)
    assert pair.flow.norm(dim=1).max() <= bound + 1e-4
    if overrides:
        assert pair.flow.abs().max() <= 4.0 + cfg.local_amplitude + 1e-4


def test_pure_translation_is_exact_shift(make_image):
    frames = _batch(make_image, b=2)
    pair = random_motion_pair(
        frames, torch.Generator().manual_seed(4), max_rotation_deg=0.0, max_zoom=0.0, local_amplitude=0.0
    )
    # Every pixel of one image moves by the same vector.
    flat = pair.flow.flatten(2)
    assert torch.allclose(flat, flat[..., :1].expand_as(flat), atol=1e-4)


def test_unknown_option_rejected(make_image):
    with pytest.raises(TypeError, match="unknown motion option"):
        random_motion_pair(_batch(make_image, b=1), max_translaton=3.0)


@pytest.mark.gpu
def test_runs_on_gpu_and_matches_cpu_generator(make_image):
    frames = _batch(make_image).cuda()
    pair = random_motion_pair(frames, torch.Generator().manual_seed(5))
    assert all(t.device.type == "cuda" for t in pair)
    cpu = random_motion_pair(frames.cpu(), torch.Generator().manual_seed(5))
    assert torch.allclose(pair.flow.cpu(), cpu.flow, atol=1e-4)
