"""How much style an output still carries (contrast, colourfulness) and how much content (``content_kept``).

A temporal loss can buy stability by flattening the output (a grey frame never flickers). These statistics expose
that: a temporally stable model whose outputs keep the per-frame model's contrast and colourfulness kept its style.
The opposite failure, a style so strong that the content is gone (pure texture), is exposed by :func:`content_kept`,
which compares an output's edges with its input's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inference.core.colour import luma, to_float

# Below these ratios an output counts as flat: against the per-frame model's contrast, and the input's.
FLAT_VS_PER_FRAME = 0.7
FLAT_VS_INPUT = 0.5
# content_kept's area-averaging block (px): strokes finer than this are texture, coarser structure is content.
CONTENT_KEPT_POOL = 4
# stroke_detail's band (Gaussian sigmas in px): a painting's strokes, between the pixel grain and the layout.
STROKE_SIGMAS = (2.0, 6.0)


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
    return luma(frames.float()).flatten(1).std(dim=1, unbiased=False).mean()


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


def sobel_magnitude(frames: Tensor) -> Tensor:
    """Sobel gradient magnitude of the luma, ``[B, H, W]`` (replicate padding: no false edge at the border).

    Args:
        frames: ``[B, 3, H, W]`` RGB in [0, 1].
    """
    _check(frames)
    padded = F.pad(luma(frames.float()), (1, 1, 1, 1), mode="replicate")
    kx = padded.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))
    return (gx.square() + gy.square()).sqrt()[:, 0]


def content_kept(inputs: Tensor, outputs: Tensor, pool: int = CONTENT_KEPT_POOL) -> Tensor:
    """How much of the input's structure an output keeps: the correlation of their edge maps.

    Per frame, the luma of input and output is area-averaged over ``pool x pool`` blocks, which removes the
    brush-stroke texture a style adds at the finest scale while keeping object outlines, then the Pearson correlation
    of the two Sobel gradient magnitudes is taken. Outlines are what a viewer reads as "the content"; the measure
    needs no loss network, so it compares models trained with any loss net. 1: the input itself (or any
    brightness/contrast change of it); about 0 for a flat output or texture unrelated to the input; negative values
    are possible but rare (edges moved off the input's).

    Args:
        inputs: ``[B, 3, H, W]`` RGB in [0, 1], the frames the outputs were made from.
        outputs: Stylized frames, same shape, RGB in [0, 1].
        pool: Block size of the area averaging (>= 1).

    Returns:
        Scalar, mean over frames, in [-1, 1].
    """
    _check(inputs)
    _check(outputs)
    if inputs.shape != outputs.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and outputs {tuple(outputs.shape)} differ in shape")
    a, b = (sobel_magnitude(F.avg_pool2d(x.float(), pool) if pool > 1 else x).flatten(1) for x in (inputs, outputs))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    # A flat frame has no edges to correlate: it kept none of the content (0, not NaN).
    corr = torch.where(denominator > 0, (a * b).sum(1) / denominator.clamp_min(1e-12), torch.zeros_like(denominator))
    return corr.mean()


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``[B, 1, H, W]`` (reflection at the border, kernel radius 3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))


def stroke_detail(frames: Tensor, fine: float = STROKE_SIGMAS[0], coarse: float = STROKE_SIGMAS[1]) -> Tensor:
    """Detail at a painting's stroke scale: mean ``|G_fine(Y) - G_coarse(Y)|`` of luma (difference of Gaussians).

    Args:
        frames: ``[B, 3, H, W]`` RGB in [0, 1].
        fine: The smaller Gaussian's sigma in pixels (2: finer grain, such as a pixel-grid pattern, is excluded).
        coarse: The larger sigma (6: broader structure is excluded).

    Returns:
        A 0-dim tensor, in [0, 1] units (multiply by 255 for grey levels).
    """
    _check(frames)
    y = luma(frames.float())
    return (_gaussian_blur(y, fine) - _gaussian_blur(y, coarse)).abs().mean()


def grain(frames: Tensor) -> Tensor:
    """Fine texture: mean ``|Laplacian(Y)|`` of luma, 4-neighbour kernel, in grey levels (0-255).

    A pixel-grid pattern (the checkerboard of an aliasing network) dominates it; :func:`stroke_detail` does not
    see it. Read the two together.
    """
    _check(frames)
    y = luma(frames.float()) * 255.0
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=y.dtype, device=y.device)
    return F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 3)).abs().mean()


def clip_stats(
    frames: Sequence[np.ndarray], batch_size: int = 16, inputs: Sequence[np.ndarray] | None = None
) -> dict[str, float]:
    """Contrast, colourfulness, :func:`stroke_detail` and :func:`grain` of a clip of ``uint8 [H, W, 3]`` RGB frames
    (mean over frames); with ``inputs`` (the frames they were made from, same shapes) also :func:`content_kept`."""
    if not frames:
        raise ValueError("clip_stats needs at least one frame")
    if inputs is not None and len(inputs) != len(frames):
        raise ValueError(f"clip_stats: {len(inputs)} input frames for {len(frames)} output frames")
    totals = {"contrast": 0.0, "colourfulness": 0.0, "stroke_detail": 0.0, "grain": 0.0}
    totals |= {"content_kept": 0.0} if inputs is not None else {}
    for i in range(0, len(frames), batch_size):
        chunk = _as_tensor(frames[i : i + batch_size])
        totals["contrast"] += float(contrast(chunk)) * len(chunk)
        totals["colourfulness"] += float(colourfulness(chunk)) * len(chunk)
        totals["stroke_detail"] += float(stroke_detail(chunk)) * len(chunk)
        totals["grain"] += float(grain(chunk)) * len(chunk)
        if inputs is not None:
            totals["content_kept"] += float(content_kept(_as_tensor(inputs[i : i + batch_size]), chunk)) * len(chunk)
    return {k: v / len(frames) for k, v in totals.items()}


def _as_tensor(frames: Sequence[np.ndarray]) -> Tensor:
    return to_float(torch.from_numpy(np.stack(frames))).permute(0, 3, 1, 2)


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
