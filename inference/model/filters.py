"""Fixed low-pass filters for alias-free resampling inside the style networks.

A network that subsamples without a low-pass filter, or upsamples by repeating pixels, draws a different picture
when its input moves by a fraction of its stride: the texture sticks to the pixel grid instead of to the surfaces
(Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"; Karras et al. 2021, "Alias-Free Generative
Adversarial Networks"). In a video that is flicker that no temporal loss or consistency stage removes without
smearing. The two layers here remove its cause:

* :class:`LowPassDownsample`: a binomial low-pass filter, then every second sample (Zhang's BlurPool).
* :class:`SmoothUpsample`: zero insertion, then a binomial interpolation filter (bilinear interpolation followed by a
  ``[1, 2, 1]`` blur, in one separable pass).

Both are fixed (no parameters, no state-dict entries) and depthwise. They are written here rather than taken from
kornia (``kornia.filters.BlurPool2D``): the runtime would gain a dependency for some twenty lines, kornia's layer
filters in 2-D where the separable form costs half, and its upsampling counterpart does not exist.

All layers take and return float ``[B, C, H, W]`` feature maps and never modify their input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def binomial_taps(taps: int) -> torch.Tensor:
    """The 1-D binomial filter with ``taps`` coefficients, summing to 1 (``taps=3``: ``[1, 2, 1] / 4``).

    Binomial filters approximate a Gaussian with a short support and have a zero at the Nyquist frequency, so the
    pixel-grid pattern (the highest frequency) is removed completely.
    """
    if taps < 1:
        raise ValueError(f"taps must be >= 1, got {taps}")
    coefficients = torch.tensor([math.comb(taps - 1, i) for i in range(taps)], dtype=torch.float32)
    return coefficients / coefficients.sum()


def _depthwise(taps: torch.Tensor, channels: int, axis: int) -> torch.Tensor:
    """``[channels, 1, 1, k]`` (``axis=-1``) or ``[channels, 1, k, 1]`` (``axis=-2``) weights of one 1-D filter."""
    shape = (1, 1, 1, -1) if axis == -1 else (1, 1, -1, 1)
    return taps.reshape(shape).repeat(channels, 1, 1, 1)


class LowPassDownsample(nn.Module):
    """Binomial low-pass filter, then subsampling by 2: ``[B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]``.

    The filter is separable and depthwise (one horizontal and one vertical pass, each keeping every second output),
    with reflection padding so borders are not darkened. With 5 taps it attenuates the band above the new Nyquist
    frequency enough that a one-pixel shift of the input moves the output by about half a pixel, smoothly, instead
    of swapping which samples are kept.

    Args:
        channels: Channels ``C`` (the filter is applied to each channel alone).
        taps: Binomial filter length (5 by default; 3 is cheaper and aliases more).
    """

    def __init__(self, channels: int, taps: int = 5) -> None:
        super().__init__()
        self.channels, self.taps = int(channels), int(taps)
        kernel = binomial_taps(self.taps)
        self.register_buffer("kernel_w", _depthwise(kernel, self.channels, -1), persistent=False)
        self.register_buffer("kernel_h", _depthwise(kernel, self.channels, -2), persistent=False)
        # Centred for odd taps; for even taps the extra tap goes after the sample, as in Zhang's BlurPool.
        self.pad = ((self.taps - 1) // 2, self.taps // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]``; the output is a new tensor."""
        before, after = self.pad
        # Reflection needs the pad to be smaller than the side; tiny maps (a few pixels) are replicated instead.
        mode = "reflect" if min(x.shape[-2:]) > after else "replicate"
        x = F.pad(x, (before, after, before, after), mode=mode)
        kernel_w, kernel_h = self.kernel_w.to(x.dtype), self.kernel_h.to(x.dtype)
        x = F.conv2d(x, kernel_w, stride=(1, 2), groups=self.channels)
        return F.conv2d(x, kernel_h, stride=(2, 1), groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, taps={self.taps}"


# Zero insertion followed by [1, 3, 3, 1] / 4 is bilinear interpolation (align_corners=False); convolving that with
# [1, 2, 1] / 4 smooths the new samples once more. Together: [1, 5, 10, 10, 5, 1] / 16 per axis (gain 2, since half
# of the inserted samples are zeros).
_SMOOTH_UP = torch.tensor([1.0, 5.0, 10.0, 10.0, 5.0, 1.0]) / 16.0


class SmoothUpsample(nn.Module):
    """Upsampling by 2 with a smooth interpolation filter: ``[B, C, H, W] -> [B, C, 2H, 2W]``.

    Unlike nearest-neighbour repetition (which copies each pixel into a 2x2 block, so the output carries the coarse
    grid's phase) or a sub-pixel shuffle (four learned phases), a low-pass interpolation filter gives an output that
    moves smoothly when the input moves by a fraction of a coarse pixel. Numerically it equals bilinear upsampling
    followed by a ``[1, 2, 1]`` blur, away from the border, computed as two separable transposed convolutions.

    Args:
        channels: Channels ``C``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)
        self.register_buffer("kernel_w", _depthwise(_SMOOTH_UP, self.channels, -1), persistent=False)
        self.register_buffer("kernel_h", _depthwise(_SMOOTH_UP, self.channels, -2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, 2H, 2W]``; the output is a new tensor."""
        height, width = x.shape[-2:]
        # One replicated pixel on each side lets the 6-tap filter reach past the border; the transposed convolution
        # then yields 2 * (size + 2) + 4 samples, of which the 2 * size centred on the input's grid are kept.
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        kernel_w, kernel_h = self.kernel_w.to(x.dtype), self.kernel_h.to(x.dtype)
        x = F.conv_transpose2d(x, kernel_w, stride=(1, 2), groups=self.channels)
        x = F.conv_transpose2d(x, kernel_h, stride=(2, 1), groups=self.channels)
        return x[..., 4 : 4 + 2 * height, 4 : 4 + 2 * width]

    def extra_repr(self) -> str:
        return f"{self.channels}"
