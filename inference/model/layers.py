"""Building blocks of the style networks: padded convolutions, (conditional) instance norm, residual blocks,
upsampling.

All blocks take and return float feature maps ``[B, C, H, W]``; none of them modifies its input in place, so a
caller's tensor (and autograd's saved activations) are never overwritten.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with one scale and shift per style, mixed by style weights (Dumoulin et al. 2017, "A Learned
    Representation for Artistic Style").

    The network sets :attr:`style` before each forward pass (see :meth:`inference.model.networks.StyleNetwork.forward`):
    ``[S]`` weights mix one scale/shift ``[C]`` for the whole batch (inference and blends: a single fused
    ``instance_norm``, as fast as the single-style layer), ``[B, S]`` gives every sample its own mixture (training,
    where each sample has its own style).

    Args:
        channels: Channels ``C``.
        num_styles: Styles ``S`` (>= 1).
        eps: Added to the variance.

    Attributes:
        weight: ``[S, C]`` per-style scale (initialised to 1).
        bias: ``[S, C]`` per-style shift (initialised to 0).
        style: The current style weights, ``[S]`` or ``[B, S]`` (non-negative, summing to 1), or ``None``.
    """

    def __init__(self, channels: int, num_styles: int, eps: float = 1e-5) -> None:
        super().__init__()
        if int(num_styles) < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        self.num_styles = int(num_styles)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.num_styles, channels))
        self.bias = nn.Parameter(torch.zeros(self.num_styles, channels))
        self.style: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``, normalised per sample and channel, then scaled and shifted."""
        if self.style is None:
            raise RuntimeError("ConditionalInstanceNorm2d.style is not set; call it through its StyleNetwork")
        style = self.style.to(self.weight.dtype)
        scale, shift = style @ self.weight, style @ self.bias
        if scale.dim() == 1:
            return F.instance_norm(x, weight=scale, bias=shift, eps=self.eps)
        # Per-sample parameters: B*C channels of one sample are normalised exactly like C channels of B samples,
        # so the scale and shift stay fused into the one normalisation pass.
        batch, channels, height, width = x.shape
        flat = x.reshape(1, batch * channels, height, width)
        out = F.instance_norm(flat, weight=scale.reshape(-1), bias=shift.reshape(-1), eps=self.eps)
        return out.reshape(batch, channels, height, width)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, num_styles={self.num_styles}, eps={self.eps}"


def instance_norm(channels: int, num_styles: int = 1) -> nn.Module:
    """The affine instance norm for ``num_styles``: the plain ``InstanceNorm2d`` for one style (so single-style
    networks keep their modules and state-dict keys), :class:`ConditionalInstanceNorm2d` for several."""
    if num_styles == 1:
        return nn.InstanceNorm2d(channels, affine=True)
    return ConditionalInstanceNorm2d(channels, num_styles)


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
        norm: Add an affine instance norm (:func:`instance_norm`).
        act: Add ``ReLU``.
        bias: Give the convolution a bias; default ``not norm``. A bias directly (or through further linear
            layers) before an instance norm is removed by its mean subtraction, so it would be a dead parameter
            that never learns (and fails the "every parameter gets a gradient" contract).
        num_styles: Styles of the norm's scale and shift (1: a plain ``InstanceNorm2d``).
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
        num_styles: int = 1,
    ) -> None:
        layers: list[nn.Module] = []
        if kernel > 1:
            layers.append(nn.ReflectionPad2d(kernel // 2))
        bias = not norm if bias is None else bias
        layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, groups=groups, bias=bias))
        if norm:
            layers.append(instance_norm(out_ch, num_styles))
        if act:
            # In place: its input is the conv's or norm's fresh output, which no one else reads (saves a pass).
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Residual(nn.Module):
    """``x + body(x)``: the identity skip around a shape-keeping ``body`` (``[B, C, H, W] -> [B, C, H, W]``)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H, W]``."""
        return x + self.body(x)


class ResidualBlock(Residual):
    """Johnson et al.'s residual block: two 3x3 conv + instance norm, ReLU after the first only, identity skip.

    Args:
        channels: Channels in and out.
        num_styles: Styles of the norms (see :class:`ConvNormAct`).
    """

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__(
            nn.Sequential(
                ConvNormAct(channels, channels, 3, num_styles=num_styles),
                ConvNormAct(channels, channels, 3, act=False, num_styles=num_styles),
            )
        )


class SeparableResidualBlock(Residual):
    """Residual block of two depthwise-separable convolutions (MobileNet style).

    Each 3x3 convolution is split into a depthwise 3x3 and a pointwise 1x1, about ``9 + C`` instead of ``9 C``
    multiply-adds per output channel; the norm sits after the pointwise convolution only, which halves the
    number of (memory-bound) normalisation passes.

    Args:
        channels: Channels in and out.
        num_styles: Styles of the norms (see :class:`ConvNormAct`).
    """

    def __init__(self, channels: int, num_styles: int = 1) -> None:
        super().__init__(
            nn.Sequential(
                ConvNormAct(channels, channels, 3, groups=channels, norm=False, act=False, bias=False),
                ConvNormAct(channels, channels, 1, num_styles=num_styles),
                ConvNormAct(channels, channels, 3, groups=channels, norm=False, act=False, bias=False),
                ConvNormAct(channels, channels, 1, act=False, num_styles=num_styles),
            )
        )


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
