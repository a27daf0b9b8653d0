"""Stroke size: run the style network on a frame resized by ``1 / scale`` and bring the result back to the frame's size.

A feed-forward style network paints strokes of a fixed size in pixels, so on a 4K frame they look tiny. Running it on
a smaller copy of the frame and enlarging the result makes the strokes ``scale`` times larger without changing the
output size. Enlarging also blurs what the frame's own detail was; ``detail="guided"`` adds the original frame's lost
high-frequency luminance back, weighted per pixel by how strongly the stylized result follows the luminance locally
(the linear coefficient of a guided filter, He et al., "Guided Image Filtering", 2010/2013; computed at the low
resolution and enlarged, as in He and Sun's "Fast Guided Filter", 2015).

Resizing follows the runtime's policy (:func:`inference.io.image_reader.resize_image`): area averaging when
shrinking, bicubic when enlarging (clamped, since bicubic overshoots).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from inference.core.colour import luma as luminance  # the name this module's callers use

#: The allowed ``scale`` range, inclusive: beyond it the network sees too few or too many pixels to be useful
#: (checked where the options are made: :class:`inference.engine.options.RuntimeOptions`).
STROKE_SCALE_RANGE = (0.25, 4.0)
#: ``detail`` modes: ``"none"`` (plain enlargement) or ``"guided"`` (luminance detail restored).
DETAIL_MODES = ("none", "guided")
#: Guided filter window radius at the network's resolution, and its regulariser (intensities in [0, 1]).
GUIDED_RADIUS = 2
GUIDED_EPS = 1e-3

Network = Callable[[torch.Tensor], torch.Tensor]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` to ``size = (height, width)``: area when neither side grows, else bicubic (clamped).

    Args:
        x: Float ``[B, C, H, W]`` in [0, 1].
        size: Target ``(height, width)``.

    Returns:
        Float ``[B, C, *size]`` in [0, 1], in ``x``'s dtype; ``x`` itself when the size is unchanged.
    """
    height, width = x.shape[-2:]
    if (height, width) == tuple(size):
        return x
    if size[0] <= height and size[1] <= width:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)


def stroke_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The size the network runs at: ``(height, width) / scale`` rounded, at least one pixel."""
    return max(1, round(height / scale)), max(1, round(width / scale))


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the ``(2 radius + 1)^2`` window around each pixel of ``[B, C, H, W]``; windows are cut at the border
    (only pixels inside the image count), so a constant image stays constant."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_coefficients(
    guide: torch.Tensor, src: torch.Tensor, radius: int = GUIDED_RADIUS, eps: float = GUIDED_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's local linear model ``src ~ a * guide + b`` (He et al., eq. 5-6), averaged over windows.

    Args:
        guide: ``[B, 1, H, W]`` grey guide in [0, 1].
        src: ``[B, C, H, W]`` image to filter.
        radius: Window radius in pixels (the window is ``2 radius + 1`` wide, cut at the border).
        eps: Regulariser: larger values shrink ``a`` towards 0 where the guide varies little.

    Returns:
        ``(a, b)``, each ``[B, C, H, W]``, already box-averaged (the filtered image is ``a * guide + b``).
    """
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i.clamp_min(0.0) + eps)
    b = mean_p - a * mean_i
    return box_filter(a, radius), box_filter(b, radius)


def restore_detail(
    original: torch.Tensor, small: torch.Tensor, styled_small: torch.Tensor, styled: torch.Tensor
) -> torch.Tensor:
    """Add the luminance detail that shrinking ``original`` lost to the enlarged stylized frame.

    The lost detail is ``Y(original) - enlarge(Y(small))``; it is added per channel times the guided filter's
    coefficient ``a`` fitted at the low resolution (``styled_small ~ a * Y(small) + b``) and enlarged, so detail
    appears where the style follows the luminance and not where the style painted over it.

    Args:
        original: ``[B, 3, H, W]`` frame in [0, 1].
        small: ``[B, 3, h, w]`` the frame the network saw.
        styled_small: ``[B, 3, h, w]`` the network's output for ``small``.
        styled: ``[B, 3, H, W]`` ``styled_small`` enlarged.

    Returns:
        ``[B, 3, H, W]`` in [0, 1], float32.
    """
    size = tuple(original.shape[-2:])
    y_small = luminance(small.float())
    lost = luminance(original.float()) - resize(y_small, size)
    a, _ = guided_coefficients(y_small, styled_small.float())
    gain = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    return (styled.float() + gain * lost).clamp_(0.0, 1.0)


def stylize_at_scale(x: torch.Tensor, network: Network, scale: float, detail: str = "none") -> torch.Tensor:
    """Run ``network`` on ``x`` resized by ``1 / scale`` and resize the result back: strokes ``scale`` times larger.

    Args:
        x: Float ``[B, 3, H, W]`` RGB in [0, 1], on any device; not modified.
        network: Float ``[B, 3, h, w]`` in [0, 1] -> same shape (any size).
        scale: Stroke scale in :data:`STROKE_SCALE_RANGE`; 1 calls ``network(x)`` and nothing else.
        detail: ``"none"``, or ``"guided"`` to restore the luminance detail lost when ``scale > 1`` (see
            :func:`restore_detail`; nothing is lost, and nothing is done, when ``scale <= 1``).

    Returns:
        ``[B, 3, H, W]`` in [0, 1], in ``x``'s dtype.
    """
    if scale == 1.0:
        return network(x)
    size = tuple(x.shape[-2:])
    small = resize(x, stroke_size(*size, scale))
    styled_small = network(small)
    styled = resize(styled_small, size)
    if detail == "guided" and scale > 1.0:
        styled = restore_detail(x, small, styled_small, styled).to(x.dtype)
    return styled


class StrokeScaled:
    """A network callable that runs at a stroke scale (see :func:`stylize_at_scale`); ``network`` is kept as is.

    Args:
        network: The callable to wrap (a module, a compiled module, an ONNX Runtime session wrapper).
        scale: Stroke scale in :data:`STROKE_SCALE_RANGE`.
        detail: One of :data:`DETAIL_MODES`.
    """

    def __init__(self, network: Network, scale: float, detail: str = "none") -> None:
        self.network = network
        self.scale = float(scale)
        self.detail = detail

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, H, W]`` in [0, 1]."""
        return stylize_at_scale(x, self.network, self.scale, self.detail)


def stroke_scaled(network: Network, scale: float = 1.0, detail: str = "none") -> Network:
    """``network`` itself at scale 1 (the plain path, untouched), else a :class:`StrokeScaled` around it."""
    return network if scale == 1.0 else StrokeScaled(network, scale, detail)
