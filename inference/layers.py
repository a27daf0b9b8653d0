"""Building blocks of the style networks: padded convolutions, residual blocks, upsampling.

All blocks take and return float feature maps ``[B, C, H, W]``; none of them modifies its input in place, so a
caller's tensor (and autograd's saved activations) are never overwritten.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Reflection pad, convolution, optional affine instance norm, optional ReLU.

    Reflection padding (Johnson et al. 2016 supplementary; Ulyanov et al. 2016) avoids the dark borders that zero
    padding paints around stylized images. Instance norm makes the output independent of the frame's contrast,
    which is what makes feed-forward stylization work (Ulyanov et al. 2017).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel: Square kernel size (odd).
        stride: Convolution stride.
        groups: Convolution groups (``in_ch`` gives a depthwise convolution).
        norm: Add ``InstanceNorm2d(out_ch, affine=True)``.
        act: Add ``ReLU``.
        bias: Give the convolution a bias; default ``not norm``. A bias directly (or through further linear
            layers) before an instance norm is removed by its mean subtraction, so it would be a dead parameter
            that never learns (and fails the "every parameter gets a gradient" contract).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        *,
        groups: int = 1,
        norm: bool = True,
        act: bool = True,
        bias: bool | None = None,
    ) -> None:
        layers: list[nn.Module] = []
        if kernel > 1:
            layers.append(nn.ReflectionPad2d(kernel // 2))
        bias = not norm if bias is None else bias
        layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, groups=groups, bias=bias))
        if norm:
            layers.append(nn.InstanceNorm2d(out_ch, affine=True))
        if act:
            # In place: its input is the conv's or norm's fresh output, which no one else reads (saves a pass).
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Johnson et al.'s residual block: two 3x3 conv + instance norm, ReLU after the first only, identity skip.

    Args:
        channels: Channels in and out.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3),
            ConvNormAct(channels, channels, 3, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        return x + self.body(x)


class SeparableResidualBlock(nn.Module):
    """Residual block of two depthwise-separable convolutions (MobileNet style).

    Each 3x3 convolution is split into a depthwise 3x3 and a pointwise 1x1, about ``9 + C`` instead of ``9 C``
    multiply-adds per output channel; the norm sits after the pointwise convolution only, which halves the
    number of (memory-bound) normalisation passes.

    Args:
        channels: Channels in and out.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, groups=channels, norm=False, act=False, bias=False),
            ConvNormAct(channels, channels, 1),
            ConvNormAct(channels, channels, 3, groups=channels, norm=False, act=False, bias=False),
            ConvNormAct(channels, channels, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        return x + self.body(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by an integer factor.

    Upsample-then-convolve instead of a transposed convolution avoids checkerboard artefacts
    (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").

    Args:
        scale: Integer upsampling factor.
    """

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, scale*H, scale*W]``."""
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
