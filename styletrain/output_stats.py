"""How much style an output still carries: contrast and colourfulness, the guard against a fading style.

A temporal loss can buy stability by flattening the output (a grey frame never flickers). These statistics expose
that: a temporally stable model whose outputs keep the per-frame model's contrast and colourfulness kept its style.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from inference.colour import BT601_LUMA

# Below these ratios an output counts as flat (issue 12): against the per-frame model's contrast, and the input's.
FLAT_VS_PER_FRAME = 0.7
FLAT_VS_INPUT = 0.5


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


def clip_stats(frames: Sequence[np.ndarray], batch_size: int = 16) -> dict[str, float]:
    """Contrast and colourfulness of a clip of ``uint8 [H, W, 3]`` RGB frames (mean over frames)."""
    if not frames:
        raise ValueError("clip_stats needs at least one frame")
    totals = {"contrast": 0.0, "colourfulness": 0.0}
    for i in range(0, len(frames), batch_size):
        chunk = torch.from_numpy(np.stack(frames[i : i + batch_size])).permute(0, 3, 1, 2).float() / 255.0
        totals["contrast"] += float(contrast(chunk)) * len(chunk)
        totals["colourfulness"] += float(colourfulness(chunk)) * len(chunk)
    return {k: v / len(frames) for k, v in totals.items()}


def fading_warnings(name: str, stats: dict[str, float], reference: dict[str, float] | None, source: dict[str, float]):
    """One-line warnings when a model's output looks flat: contrast under 0.7x the per-frame model's (``reference``)
    or under 0.5x the input clip's (``source``).

    Returns:
        A list of warning strings (empty when the output keeps its contrast).
    """
    warnings = []
    if reference and reference["contrast"] > 0 and stats["contrast"] < FLAT_VS_PER_FRAME * reference["contrast"]:
        ratio = stats["contrast"] / reference["contrast"]
        warnings.append(
            f"{name}: output contrast is {ratio:.2f}x the per-frame model's (under {FLAT_VS_PER_FRAME}): "
            "the temporal loss may be removing the style"
        )
    if source["contrast"] > 0 and stats["contrast"] < FLAT_VS_INPUT * source["contrast"]:
        ratio = stats["contrast"] / source["contrast"]
        warnings.append(
            f"{name}: output contrast is {ratio:.2f}x the input clip's (under {FLAT_VS_INPUT}): flat output"
        )
    return warnings
