"""How much style an output still carries: contrast and colourfulness, the guard against a fading style.

A temporal loss can buy stability by flattening the output (a grey frame never flickers). These statistics expose
that: a temporally stable model whose outputs keep the per-frame model's contrast and colourfulness kept its style.
"""

from __future__ import annotations

import torch
from torch import Tensor

from inference.colour import BT601_LUMA


def _check(frames: Tensor) -> None:
    if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
        raise ValueError(f"expected float RGB frames [B, 3, H, W] in [0, 1], got {tuple(frames.shape)} {frames.dtype}")


def contrast(frames: Tensor) -> Tensor:
    """Root-mean-square contrast: the standard deviation of BT.601 luma within each frame, averaged over frames.

    Args:
        frames: ``[B, 3, H, W]`` RGB in [0, 1].

    Returns:
        Scalar in [0, 0.5]; 0 for flat frames.
    """
    _check(frames)
    luma = (frames.float() * frames.new_tensor(BT601_LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(1)
    return luma.flatten(1).std(dim=1, unbiased=False).mean()


def colourfulness(frames: Tensor) -> Tensor:
    """Hasler and Suesstrunk's colourfulness (2003), on RGB in [0, 1], averaged over frames.

    ``M = sqrt(var(rg) + var(yb)) + 0.3 * sqrt(mean(rg)**2 + mean(yb)**2)`` with ``rg = R - G`` and
    ``yb = (R + G) / 2 - B``; 0 for grey frames, about 0.43 for saturated, varied colour (0.0-1.0 scale, the paper's
    0-255 scale divided by 255).

    Args:
        frames: ``[B, 3, H, W]`` RGB in [0, 1].

    Returns:
        Scalar >= 0.
    """
    _check(frames)
    r, g, b = frames.float().unbind(1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    centre = (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()
    return (spread + 0.3 * centre).mean()
