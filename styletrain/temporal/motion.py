"""Synthetic motion: a second frame with exactly known flow for every still training image.

Construction (exact by design). For a batch of stills ``I`` we draw a smooth sampling field ``G [B,2,H,W]``
(a global affine motion, translation + rotation + zoom about the centre, plus a smooth local deformation) and set

    frame2 = I
    frame1 = warp(I, G)            i.e. frame1(x) = I(x + G(x)) = frame2(x + G(x))

so ``flow = G`` satisfies the project's convention ``frame1(x) ≈ frame2(x + flow(x))`` exactly, with the same
bilinear sampling as :func:`inference.engine.flow.warp`. The mask marks the frame1 pixels whose source ``x + G(x)``
lies inside frame2 (1 px away from its border): those are the pixels visible in both frames. Outside the mask frame1
is filled by reflection, so it has no black borders (the content/style losses see a natural-looking image) while the
temporal loss ignores those pixels. Photometric noise (Gaussian, per-frame sigma) and a small brightness change of
frame2 are added after warping, so the flow stays exact and the network learns to ignore sensor noise.

Everything runs batched on ``frames.device`` and is deterministic under ``generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from inference.engine.flow import inside_mask, warp


@dataclass(frozen=True)
class MotionConfig:
    """Ranges of the random motion (all sampled uniformly per image).

    Attributes:
        max_translation: Largest translation per axis, pixels.
        max_rotation_deg: Largest rotation about the image centre, degrees.
        max_zoom: Largest relative zoom, e.g. 0.05 = scale in [0.95, 1.05].
        local_amplitude: Largest local (non-rigid) displacement per axis, pixels.
        local_grid: Cells of the coarse random grid along the longer side; fewer cells = smoother deformation.
        noise_sigma: ``(low, high)`` range of the Gaussian noise sigma per frame, on [0,1] pixel values.
        brightness: Largest additive brightness change of frame2, on [0,1] pixel values.
    """

    max_translation: float = 16.0
    max_rotation_deg: float = 3.0
    max_zoom: float = 0.05
    local_amplitude: float = 2.0
    local_grid: int = 4
    noise_sigma: tuple[float, float] = (0.001, 0.002)
    brightness: float = 0.02


class MotionPair(NamedTuple):
    """A synthetic pair in the project's flow convention.

    Attributes:
        frame1: ``[B,3,H,W]`` in [0,1] (the warped still, plus noise).
        frame2: ``[B,3,H,W]`` in [0,1] (the still, plus noise and brightness change).
        flow: ``[B,2,H,W]`` float32 pixels, ``frame1(x) ≈ frame2(x + flow(x))``.
        mask: ``[B,1,H,W]`` float32 in {0,1}, 1 where the frame1 pixel is visible in frame2.
    """

    frame1: Tensor
    frame2: Tensor
    flow: Tensor
    mask: Tensor


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None, device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return (low + (high - low) * u).to(device)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)


def random_flow(
    batch: int, height: int, width: int, config: MotionConfig, *, generator: torch.Generator | None = None, device="cpu"
) -> Tensor:
    """A random smooth flow field ``[B,2,H,W]`` (float32 pixels) drawn from ``config``."""
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1) - (height - 1) / 2
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width) - (width - 1) / 2
    b = (batch, 1, 1)
    t = config.max_translation
    tx, ty = _uniform(b, -t, t, generator, device), _uniform(b, -t, t, generator, device)
    r = math.radians(config.max_rotation_deg)
    theta = _uniform(b, -r, r, generator, device)
    scale = _uniform(b, 1.0 - config.max_zoom, 1.0 + config.max_zoom, generator, device)
    cos, sin = scale * torch.cos(theta), scale * torch.sin(theta)
    # Target position p' = c + sR(x - c) + t, displacement = p' - x.
    u = cos * xs - sin * ys + tx - xs
    v = sin * xs + cos * ys + ty - ys
    flow = torch.stack((u, v), dim=1)
    if config.local_amplitude > 0:
        cells = max(1, int(config.local_grid))
        gh = max(2, round(cells * height / max(height, width)) + 1)
        gw = max(2, round(cells * width / max(height, width)) + 1)
        coarse = _uniform((batch, 2, gh, gw), -1.0, 1.0, generator, device)
        local = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
        # Bicubic overshoots slightly; the clamp keeps the documented bound exact.
        flow = flow + config.local_amplitude * local.clamp(-1.0, 1.0)
    return flow


def random_motion_pair(
    frames: Tensor, generator: torch.Generator | None = None, config: MotionConfig | None = None, **overrides
) -> MotionPair:
    """Make a synthetic video pair with exact flow from each still in ``frames``.

    Args:
        frames: ``[B,3,H,W]`` float in [0,1], on any device (the pair is built there). Not modified.
        generator: Optional ``torch.Generator`` (CPU or on ``frames.device``) for reproducible pairs.
        config: Base :class:`MotionConfig` (defaults if None).
        **overrides: Any :class:`MotionConfig` field, e.g. ``max_translation=8.0``.

    Returns:
        :class:`MotionPair` ``(frame1, frame2, flow, mask)``; frames keep ``frames.dtype``.
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"random_motion_pair expects frames [B,3,H,W], got {tuple(frames.shape)}")
    known = {f.name for f in fields(MotionConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown motion option(s) {sorted(unknown)}; known: {sorted(known)}")
    config = replace(config or MotionConfig(), **overrides)
    b, _, h, w = frames.shape
    device, dtype = frames.device, frames.dtype
    flow = random_flow(b, h, w, config, generator=generator, device=device)
    image = frames.detach().float()
    frame1 = warp(image, flow, padding_mode="reflection")
    mask = inside_mask(flow, border=1.0)
    frame2 = image

    lo, hi = config.noise_sigma
    sigma1 = _uniform((b, 1, 1, 1), lo, hi, generator, device)
    sigma2 = _uniform((b, 1, 1, 1), lo, hi, generator, device)
    delta = _uniform((b, 1, 1, 1), -config.brightness, config.brightness, generator, device)
    frame1 = frame1 + sigma1 * _randn(tuple(frame1.shape), generator, device)
    frame2 = frame2 + delta + sigma2 * _randn(tuple(frame2.shape), generator, device)
    return MotionPair(frame1.clamp(0, 1).to(dtype), frame2.clamp(0, 1).to(dtype), flow, mask)
