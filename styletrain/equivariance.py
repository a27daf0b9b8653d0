"""Shift error: how far a network is from drawing the same picture when its input moves.

For a transform ``T`` of the image plane (a shift, a zoom, a rotation), the error is the mean absolute difference
between ``f(T x)`` and ``T f(x)``: zero for a network equivariant to ``T``, whose texture moves with the surfaces.
A network that aliases (strided sampling without a low-pass filter, a sub-pixel output grid) redraws its texture
instead, which in a video is flicker (see ``docs/equivariance.md``).

``T`` is applied by one resampler on both sides (bicubic :func:`torch.nn.functional.grid_sample`; at integer
shifts it copies pixels exactly), and a border is left out, where content enters or leaves the frame and where
the network's own padding differs. Every figure is reported in grey levels (0-255) and relative to the output's
standard deviation, so that a network that paints flat colour cannot look stable by being dull.

The transforms measured by :func:`equivariance_report`:

* integer shifts ``1 .. stride`` pixels (each averaged over a horizontal and a vertical shift);
* sub-pixel shifts of 0.25 and 0.5 pixels;
* a zoom by 5 % and a rotation by 2 degrees about the centre.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Network = Callable[[torch.Tensor], torch.Tensor]

BORDER = 32
"""Pixels left out on each side (content entering the frame, the network's padding, the zoom's and rotation's
reach at 640 px)."""


@dataclass(frozen=True)
class Transform:
    """An affine transform of the image plane about its centre, in pixels and degrees.

    Attributes:
        name: Its key in reports, e.g. ``"shift_1"``, ``"shift_0.25"``, ``"zoom_1.05"``, ``"rotate_2"``.
        dx: Horizontal shift in pixels (content moves right for positive values).
        dy: Vertical shift in pixels (content moves down).
        zoom: Scale factor (content grows for values above 1).
        degrees: Rotation (counter-clockwise on screen for positive values).
    """

    name: str
    dx: float = 0.0
    dy: float = 0.0
    zoom: float = 1.0
    degrees: float = 0.0


def resample(images: torch.Tensor, transform: Transform) -> torch.Tensor:
    """Apply ``transform`` to ``[B, C, H, W]`` images with bicubic interpolation; returns a new tensor.

    Pixels whose source lies outside the image take the reflected border (they are inside :data:`BORDER` and
    left out of every measure). The result is clamped to the input's range [0, 1] where the input is in it.
    """
    batch, _, height, width = images.shape
    angle = math.radians(transform.degrees)
    cos, sin = math.cos(angle) / transform.zoom, math.sin(angle) / transform.zoom
    # The grid maps each OUTPUT pixel to its source in normalised coordinates ([-1, 1] across each side); the
    # rotation is done in pixels (aspect-correct), then rescaled per axis.
    theta = torch.tensor(
        [
            [cos, sin * height / width, -2.0 * transform.dx / width],
            [-sin * width / height, cos, -2.0 * transform.dy / height],
        ],
        dtype=images.dtype,
        device=images.device,
    )
    grid = F.affine_grid(theta.expand(batch, 2, 3), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out.clamp(0.0, 1.0)


def default_transforms(stride: int) -> list[Transform]:
    """Integer shifts ``1..stride``, sub-pixel shifts 0.25 and 0.5, zoom 1.05 and rotation 2 degrees."""
    shifts = [Transform(f"shift_{d}", dx=float(d)) for d in range(1, max(int(stride), 1) + 1)]
    subpixel = [Transform(f"shift_{s}", dx=s) for s in (0.25, 0.5)]
    return shifts + subpixel + [Transform("zoom_1.05", zoom=1.05), Transform("rotate_2", degrees=2.0)]


def _transposed(transform: Transform) -> Transform:
    """The same shift along the other axis (zoom and rotation are their own)."""
    return Transform(transform.name, dx=transform.dy, dy=transform.dx, zoom=transform.zoom, degrees=transform.degrees)


@torch.no_grad()
def shift_error(net: Network, images: torch.Tensor, transform: Transform, border: int = BORDER) -> dict[str, float]:
    """Mean ``|f(T x) - T f(x)|`` over the interior of ``images``.

    Args:
        net: ``[B, 3, H, W]`` RGB in [0, 1] to the same shape and range (a style network in eval mode).
        images: ``[B, 3, H, W]`` float RGB in [0, 1], real frames, each side larger than ``2 * border``.
        transform: The transform ``T``; a pure shift is measured along x and along y and averaged.
        border: Pixels left out on each side.

    Returns:
        ``{"grey": error in grey levels (0-255), "relative": error / std of f(x) over the interior}``.

    Raises:
        ValueError: Images not ``[B, 3, H, W]`` or too small for the border.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    if min(images.shape[-2:]) <= 2 * border:
        raise ValueError(f"images of {tuple(images.shape[-2:])} are too small for a border of {border} px")
    reference = net(images)
    inside = (..., slice(border, -border), slice(border, -border))
    spread = float(reference[inside].std(dim=(-2, -1)).mean())
    is_shift = transform.zoom == 1.0 and transform.degrees == 0.0
    variants = [transform, _transposed(transform)] if is_shift else [transform]
    errors = []
    for variant in variants:
        moved_then_styled = net(resample(images, variant))
        styled_then_moved = resample(reference, variant)
        errors.append(float((moved_then_styled - styled_then_moved)[inside].abs().mean()))
    error = sum(errors) / len(errors)
    return {"grey": 255.0 * error, "relative": error / spread if spread > 0 else float("inf")}


def border_for(height: int, width: int) -> int:
    """:data:`BORDER`, or a quarter of the shorter side for frames under 128 px (half of each side is measured)."""
    return min(BORDER, min(height, width) // 4)


def equivariance_report(
    net: Network, images: torch.Tensor, stride: int, transforms: Sequence[Transform] | None = None
) -> dict[str, dict[str, float]]:
    """:func:`shift_error` for each transform (default: :func:`default_transforms` for ``stride``), by name.

    The border is :func:`border_for` the frames' size, so small previews are measured too.
    """
    chosen = default_transforms(stride) if transforms is None else transforms
    border = border_for(*images.shape[-2:])
    return {t.name: shift_error(net, images, t, border=border) for t in chosen}


@torch.no_grad()
def one_pixel_shift_error(net: Network, images: torch.Tensor) -> torch.Tensor:
    """The training dashboard's metric: mean ``|f(x shifted 1 px) - f(x) shifted 1 px|`` relative to the std of
    ``f(x)``, on crops (no resampling: the shift is a crop offset), with an 8-pixel border left out.

    Args:
        net: The style network (eval or train mode; no gradients are taken).
        images: ``[B, 3, H, W]`` in [0, 1], each side at least 24 px.

    Returns:
        A 0-dim tensor on ``images``' device.
    """
    border = 8
    base, moved = images[..., :, :-1], images[..., :, 1:]
    # moved[j] = base[j + 1], so an equivariant network gives f(moved)[j] = f(base)[j + 1].
    out_base, out_moved = net(base), net(moved)
    inside = (..., slice(border, -border), slice(border, -border - 1))
    a = out_moved[inside]
    b = out_base[..., border:-border, border + 1 : -border]
    spread = out_base[..., border:-border, border:-border].std(dim=(-2, -1)).mean().clamp_min(1e-6)
    return (a - b).abs().mean() / spread
