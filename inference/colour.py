"""Colour operations applied after the network: strength blending and colour preservation.

Both work on float tensors ``[B, 3, H, W]`` with RGB values in [0, 1], on whatever device the frames are on, and
never modify their inputs.
"""

from __future__ import annotations

import torch

# ITU-R BT.601 luma weights (full-range JPEG YCbCr): luminance is what "style" mostly lives in, chroma is the
# content's own colour. The one definition in the project; training's luminance-aware temporal loss uses it too.
BT601_LUMA = (0.299, 0.587, 0.114)


def blend(styled: torch.Tensor, original: torch.Tensor, strength: float) -> torch.Tensor:
    """Mix the stylized frames with the originals.

    Args:
        styled: ``[B, 3, H, W]`` in [0, 1].
        original: ``[B, 3, H, W]`` in [0, 1], same shape.
        strength: 1 keeps ``styled``, 0 gives back ``original``.

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    if strength >= 1.0:
        return styled
    return torch.lerp(original, styled, float(strength))


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` in [0, 1] to full-range YCbCr ``[B, 3, H, W]`` (Y in [0, 1], Cb/Cr centred on 0.5)."""
    r, g, b = rgb.unbind(1)
    y = BT601_LUMA[0] * r + BT601_LUMA[1] * g + BT601_LUMA[2] * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.stack((y, cb, cr), 1)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`; the result is not clamped."""
    y, cb, cr = ycc.unbind(1)
    r = y + 1.403 * (cr - 0.5)
    b = y + 1.773 * (cb - 0.5)
    g = (y - BT601_LUMA[0] * r - BT601_LUMA[2] * b) / BT601_LUMA[1]
    return torch.stack((r, g, b), 1)


def preserve_color(styled: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Keep the original's chroma and take only the luminance from the stylized frame (Gatys et al. 2016, sec. 2.2).

    Args:
        styled: ``[B, 3, H, W]`` in [0, 1].
        original: ``[B, 3, H, W]`` in [0, 1], same shape.

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    r, g, b = styled.unbind(1)
    y = (BT601_LUMA[0] * r + BT601_LUMA[1] * g + BT601_LUMA[2] * b).unsqueeze(1)
    ycc = rgb_to_ycbcr(original)
    return ycbcr_to_rgb(torch.cat((y, ycc[:, 1:]), 1)).clamp(0.0, 1.0)
