"""The style ("transformer") networks, built by name from a small registry.

Pixel contract of every network (it lives here, in the model, not in the callers):

* input ``x``: float ``[B, 3, H, W]``, RGB in [0, 1], any ``H, W >= 1``; it is never modified in place;
* output: ``[B, 3, H, W]`` RGB in [0, 1] (a sigmoid; see :meth:`StyleNetwork.forward`);
* ``forward(x, return_features=True)`` also returns a feature map at 1/4 resolution,
  ``[B, C, ceil(H/4), ceil(W/4)]``, used by the temporal feature loss;
* ``forward(x, style=w)``: a network built with ``num_styles=S > 1`` carries one set of normalisation scales and
  shifts per style (conditional instance norm, Dumoulin et al. 2017); ``w`` is ``[S]`` (one mixture for the batch)
  or ``[B, S]`` (one per sample) non-negative weights summing to 1. Without it the network uses the mixture set by
  :meth:`StyleNetwork.set_style` (the first style by default).

Inside, the input is padded to a multiple of the network's total stride (reflection where the image is large
enough, replication otherwise) and the output is cropped back, so odd frame sizes such as 1080 rows work.

Networks:

* ``johnson``: Johnson, Alahi and Fei-Fei 2016, "Perceptual Losses for Real-Time Style Transfer", with the
  supplementary's refinements (instance norm instead of batch norm, Ulyanov et al. 2017; nearest upsampling
  followed by a convolution instead of fractionally-strided convolutions, Odena et al. 2016).
* ``light``: a real-time CPU variant working at 1/8 resolution with depthwise-separable residual blocks.
* ``tiny``: a very small ``johnson`` for tests.
* ``identity``: no parameters, output equal to input; it measures what a pipeline costs around the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inference.core.errors import UserError
from inference.model.filters import LowPassDownsample, SmoothUpsample
from inference.model.layers import (
    ConditionalInstanceNorm2d,
    ConvNormAct,
    ResidualBlock,
    SeparableResidualBlock,
    Upsample,
)

_REGISTRY: dict[str, type[StyleNetwork]] = {}


def register_network(name: str) -> Callable[[type[StyleNetwork]], type[StyleNetwork]]:
    """Class decorator adding a :class:`StyleNetwork` subclass to the registry under ``name``."""

    def decorator(cls: type[StyleNetwork]) -> type[StyleNetwork]:
        if name in _REGISTRY:
            raise ValueError(f"network {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_networks() -> list[str]:
    """Names accepted by :func:`build_network`, sorted."""
    return sorted(_REGISTRY)


def build_network(name: str, **kwargs: Any) -> StyleNetwork:
    """Build a registered network.

    Args:
        name: Registry name, e.g. ``"johnson"``, ``"light"`` or ``"tiny"``.
        **kwargs: Constructor arguments (what ``net.config`` holds).

    Raises:
        UserError: Unknown name or invalid constructor arguments (one line).
    """
    if name not in _REGISTRY:
        raise UserError(f"unknown network {name!r}; available: {', '.join(available_networks())}")
    try:
        return _REGISTRY[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid arguments for network {name!r} {kwargs}: {exc}") from None


def build_saved_network(name: str, config: dict[str, Any]) -> StyleNetwork:
    """Rebuild a network from a SAVED config (an artifact's ``network_kwargs``, a checkpoint's hyperparameters).

    Configs written before the alias-free design have no ``alias_free`` key: they rebuild the design they were
    trained with (``alias_free=False``), so their weights load strictly and give bit-identical output. Fresh
    configs always record the key (see :attr:`StyleNetwork.config`).

    Raises:
        UserError: As :func:`build_network`.
    """
    cls = _REGISTRY.get(name)
    if cls is not None and getattr(cls, "has_alias_free_design", False) and "alias_free" not in config:
        config = {**config, "alias_free": False}
    return build_network(name, **config)


def _trunk(channels: Sequence[int], num_residual: int) -> tuple[tuple[int, int, int], int]:
    """The checked ``(c1, c2, c3)`` and residual block count of a three-stage encoder/decoder network."""
    values = [int(c) for c in channels]
    if len(values) != 3 or any(c < 1 for c in values):
        raise ValueError(f"channels must be 3 positive integers, got {list(channels)}")
    if int(num_residual) < 0:
        raise ValueError(f"num_residual must be >= 0, got {num_residual}")
    c1, c2, c3 = values
    return (c1, c2, c3), int(num_residual)


class StyleNetwork(nn.Module):
    """Base class: input checks, padding to the stride, cropping and the [0, 1] output map.

    Subclasses set ``stride`` (total downsampling) and implement :meth:`_forward_padded`; ``config`` holds the
    constructor keyword arguments as JSON-friendly values, so ``build_network(net.name, **net.config)`` rebuilds it
    (``num_styles`` appears in it only when above 1, so single-style configs are unchanged).

    Attributes:
        num_styles: Styles the network carries (1: plain instance norms).
        style_weights: ``[S]`` buffer (not saved) with the mixture used when ``forward`` gets no ``style``.
    """

    name: str = ""
    stride: int = 4

    def __init__(self, num_styles: int = 1, **config: Any) -> None:
        super().__init__()
        if int(num_styles) < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        self.num_styles = int(num_styles)
        self.config: dict[str, Any] = config | ({"num_styles": self.num_styles} if self.num_styles > 1 else {})
        self.register_buffer("style_weights", F.one_hot(torch.tensor(0), self.num_styles).float(), persistent=False)
        self._style_layers: list[ConditionalInstanceNorm2d] | None = None

    def set_style(self, weights: Sequence[float] | torch.Tensor) -> None:
        """Set the style mixture used when ``forward`` gets no ``style``.

        Args:
            weights: ``[S]`` non-negative finite weights with a positive sum; they are normalised to sum to 1.

        Raises:
            ValueError: Wrong length, negative or non-finite weight, or zero total.
        """
        w = torch.as_tensor(weights, dtype=torch.float32).flatten()
        if w.numel() != self.num_styles:
            raise ValueError(f"expected {self.num_styles} style weights, got {w.numel()}")
        if not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
            raise ValueError(f"style weights must be finite, non-negative and not all zero, got {w.tolist()}")
        self.style_weights.copy_(w / w.sum())

    def bind_style(self, style: torch.Tensor | None, batch: int) -> None:
        """Hand the style weights to every conditional norm before a pass over ``_forward_padded``.

        Args:
            style: ``[S]`` or ``[B, S]`` weights, or ``None`` for :attr:`style_weights`.
            batch: The batch size ``B`` (checked against a ``[B, S]`` style).
        """
        if self.num_styles == 1:
            return
        style = self.style_weights if style is None else style.to(self.style_weights.device)
        if style.shape[-1] != self.num_styles or style.dim() > 2 or (style.dim() == 2 and style.shape[0] != batch):
            raise ValueError(
                f"style must be [{self.num_styles}] or [{batch}, {self.num_styles}], got {list(style.shape)}"
            )
        if self._style_layers is None:
            self._style_layers = [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]
        for layer in self._style_layers:
            layer.style = style

    def _forward_padded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return pre-activation output ``[B, 3, H, W]`` and 1/4-resolution features for a padded input."""
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, return_features: bool = False, style: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Stylize a batch.

        Args:
            x: ``[B, 3, H, W]`` float RGB in [0, 1]; not modified.
            return_features: Also return the 1/4-resolution features.
            style: ``[S]`` or ``[B, S]`` style weights (non-negative, summing to 1); ``None``: :attr:`style_weights`.

        Returns:
            ``[B, 3, H, W]`` RGB in [0, 1], or ``(output, features [B, C, ceil(H/4), ceil(W/4)])``.
        """
        if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float tensor [B, 3, H, W], got {tuple(x.shape)} {x.dtype}")
        self.bind_style(style, x.shape[0])
        height, width = x.shape[-2:]
        padded = _pad_to(x, self.stride, min_size=2 * self.stride)
        logits, features = self._forward_padded(padded)
        # A sigmoid bounds the output to [0, 1] smoothly: unlike clamp() its gradient is never exactly zero, so
        # saturated pixels can still recover. It equals (tanh(x/2) + 1) / 2: Johnson's scaled-tanh output for [0, 1].
        out = torch.sigmoid(logits[..., :height, :width])
        if return_features:
            return out, features[..., : math.ceil(height / 4), : math.ceil(width / 4)]
        return out


def _pad_to(x: torch.Tensor, multiple: int, min_size: int) -> torch.Tensor:
    """Pad bottom/right of ``x`` to a multiple of ``multiple`` (and at least ``min_size``); returns a new tensor."""
    height, width = x.shape[-2:]
    pad_h = max(math.ceil(height / multiple) * multiple, min_size) - height
    pad_w = max(math.ceil(width / multiple) * multiple, min_size) - width
    if pad_h == 0 and pad_w == 0:
        return x
    # Reflection keeps texture statistics at the border; it needs pad < size, so tiny inputs are replicated.
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@register_network("johnson")
class JohnsonNet(StyleNetwork):
    """Johnson et al. 2016 transformer network, alias-free by default.

    9x9 conv to ``c1``, two downsampling 3x3 convs to ``c2`` and ``c3``, ``num_residual`` residual blocks at
    ``c3``, then two (x2 upsample, 3x3 conv) stages back to ``c2``, ``c1`` and a 9x9 conv to RGB.
    Instance norm (affine) and ReLU after every conv but the last. The features are the residual trunk's output.

    With ``alias_free=True`` (the default) every downsampling is a binomial low-pass filter and subsampling followed
    by a stride-1 conv at the lower resolution (:class:`~inference.model.filters.LowPassDownsample`), and every
    upsampling a smooth interpolation (:class:`~inference.model.filters.SmoothUpsample`), so a frame moved by one
    pixel gives the same picture moved by one pixel (see ``docs/equivariance.md``). ``alias_free=False`` is the
    original design (stride-2 convs, nearest upsampling), kept so that artifacts trained with it load unchanged.

    As in the paper, the residual blocks' last norm biases only shift channels by constants that the decoder's
    first norm removes, so they receive gradients only through the features (the temporal feature loss).

    Args:
        channels: ``(c1, c2, c3)``, default ``(32, 64, 128)`` as in the paper.
        num_residual: Number of residual blocks, default 5 as in the paper.
        num_styles: Styles (conditional instance norms when above 1).
        alias_free: Low-pass filtered resampling (default) or the original strided/nearest design.
    """

    stride = 4
    has_alias_free_design = True

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        num_residual: int = 5,
        num_styles: int = 1,
        alias_free: bool = True,
    ) -> None:
        (c1, c2, c3), num_residual = _trunk(channels, num_residual)
        alias_free = bool(alias_free)
        super().__init__(num_styles, channels=[c1, c2, c3], num_residual=num_residual, alias_free=alias_free)
        s = self.num_styles
        if alias_free:
            self.encoder = nn.Sequential(
                ConvNormAct(3, c1, 9, num_styles=s),
                LowPassDownsample(c1),
                ConvNormAct(c1, c2, 3, num_styles=s),
                LowPassDownsample(c2),
                ConvNormAct(c2, c3, 3, num_styles=s),
            )
        else:
            self.encoder = nn.Sequential(
                ConvNormAct(3, c1, 9, num_styles=s),
                ConvNormAct(c1, c2, 3, stride=2, num_styles=s),
                ConvNormAct(c2, c3, 3, stride=2, num_styles=s),
            )
        self.residual = nn.Sequential(*(ResidualBlock(c3, s) for _ in range(num_residual)))
        self.decoder = nn.Sequential(
            SmoothUpsample(c3) if alias_free else Upsample(2),
            ConvNormAct(c3, c2, 3, num_styles=s),
            SmoothUpsample(c2) if alias_free else Upsample(2),
            ConvNormAct(c2, c1, 3, num_styles=s),
            ConvNormAct(c1, 3, 9, norm=False, act=False),
        )

    def _forward_padded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.residual(self.encoder(x))
        return self.decoder(features), features


@register_network("tiny")
class TinyNet(JohnsonNet):
    """A very small :class:`JohnsonNet` (8/16/16 channels, one residual block) for fast tests."""

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 16),
        num_residual: int = 1,
        num_styles: int = 1,
        alias_free: bool = True,
    ) -> None:
        super().__init__(channels=channels, num_residual=num_residual, num_styles=num_styles, alias_free=alias_free)


@register_network("light")
class LightNet(StyleNetwork):
    """Real-time CPU network: works at 1/8 resolution with depthwise-separable residual blocks; alias-free by default.

    Encoder: three downsampling 3x3 convs (``c1``, ``c2``, ``c3``), so no convolution runs at full resolution and
    the residual trunk sees 1/64 of the pixels. Trunk: ``num_residual`` :class:`SeparableResidualBlock`\\ s at
    ``c3``. Decoder: a ReLU, then each stage first narrows the channels with a 1x1 conv at the low resolution
    (cheap), then upsamples x2 and applies a depthwise-separable 3x3 conv. The features (for the temporal loss) are
    the decoder's 1/4-resolution activation.

    With ``alias_free=True`` (the default) each downsampling is a binomial low-pass filter and subsampling followed by
    a stride-1 conv (:class:`~inference.model.filters.LowPassDownsample`), each upsampling a smooth interpolation
    (:class:`~inference.model.filters.SmoothUpsample`), and the last stage predicts RGB at 1/2 resolution and
    interpolates it smoothly to full resolution: no sub-pixel phase grid, so a one-pixel shift cannot swap phases
    (see ``docs/equivariance.md``). ``alias_free=False`` is the original design, kept so that its artifacts load
    unchanged: stride-2 convs, nearest upsampling, and 4 sub-pixels per channel at 1/2 resolution rearranged with
    ``pixel_shuffle`` (Shi et al. 2016), whose phases an odd shift swaps.

    Args:
        channels: ``(c1, c2, c3)``, default ``(16, 48, 96)``.
        num_residual: Number of separable residual blocks at 1/8 resolution, default 5.
        num_styles: Styles (conditional instance norms when above 1).
        alias_free: Low-pass filtered resampling (default) or the original strided/nearest/pixel-shuffle design.
    """

    stride = 8
    has_alias_free_design = True

    # The defaults trade speed for capacity: narrower trunks run faster but hold less of a style;
    # docs/performance.md has the frame rates.
    def __init__(
        self,
        channels: Sequence[int] = (16, 48, 96),
        num_residual: int = 5,
        num_styles: int = 1,
        alias_free: bool = True,
    ) -> None:
        (c1, c2, c3), num_residual = _trunk(channels, num_residual)
        alias_free = bool(alias_free)
        super().__init__(num_styles, channels=[c1, c2, c3], num_residual=num_residual, alias_free=alias_free)
        s = self.num_styles
        if alias_free:
            self.encoder = nn.Sequential(
                LowPassDownsample(3),
                ConvNormAct(3, c1, 3, num_styles=s),
                LowPassDownsample(c1),
                ConvNormAct(c1, c2, 3, num_styles=s),
                LowPassDownsample(c2),
                ConvNormAct(c2, c3, 3, num_styles=s),
            )
        else:
            self.encoder = nn.Sequential(
                ConvNormAct(3, c1, 3, stride=2, num_styles=s),
                ConvNormAct(c1, c2, 3, stride=2, num_styles=s),
                ConvNormAct(c2, c3, 3, stride=2, num_styles=s),
            )
        self.residual = nn.Sequential(*(SeparableResidualBlock(c3, s) for _ in range(num_residual)))
        self.up_quarter = nn.Sequential(
            # The ReLU makes the decoder non-linear before its first norm; without it, the residual blocks' last
            # norm biases would only shift every channel by a constant that the next norm removes, and never learn.
            nn.ReLU(),
            # No biases before the instance norm: it would remove them (see ConvNormAct).
            ConvNormAct(c3, c2, 1, norm=False, act=False, bias=False),
            SmoothUpsample(c2) if alias_free else Upsample(2),
            ConvNormAct(c2, c2, 3, groups=c2, norm=False, act=False, bias=False),
            ConvNormAct(c2, c2, 1, num_styles=s),
        )
        half = [
            ConvNormAct(c2, c1, 1, norm=False, act=False, bias=False),
            SmoothUpsample(c1) if alias_free else Upsample(2),
            ConvNormAct(c1, c1, 3, groups=c1, norm=False, act=False, bias=False),
            ConvNormAct(c1, c1, 1, num_styles=s),
        ]
        if alias_free:
            # RGB at 1/2 resolution, then smooth interpolation: as cheap as the sub-pixel output, without its phases.
            half += [ConvNormAct(c1, 3, 3, norm=False, act=False), SmoothUpsample(3)]
        else:
            # The original sub-pixel output avoids any 16-channel full-resolution tensor, at the price of a phase grid.
            half += [ConvNormAct(c1, 3 * 4, 3, norm=False, act=False), nn.PixelShuffle(2)]
        self.up_half = nn.Sequential(*half)

    def _forward_padded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.up_quarter(self.residual(self.encoder(x)))
        return self.up_half(features), features


@register_network("identity")
class IdentityNet(StyleNetwork):
    """No parameters; the output is the input. It runs every stage of a pipeline except a real network, so the
    pipeline's own cost can be measured on any machine (``bench/video.py``, ``stylize-video --stats``)."""

    stride = 1

    def __init__(self) -> None:
        super().__init__()

    def _forward_padded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, F.avg_pool2d(x, 4, ceil_mode=True)

    def forward(
        self, x: torch.Tensor, return_features: bool = False, style: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x`` itself (``[B, 3, H, W]`` float in [0, 1]; not copied, so callers must not modify the result in
        place; ``style`` is ignored: one style), and with ``return_features`` its 4x4 average pool
        ``[B, 3, ceil(H/4), ceil(W/4)]``."""
        if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float tensor [B, 3, H, W], got {tuple(x.shape)} {x.dtype}")
        return self._forward_padded(x) if return_features else x


def count_parameters(net: nn.Module) -> int:
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in net.parameters())


@torch.no_grad()
def flops_per_pixel(net: nn.Module, size: tuple[int, int] = (256, 256)) -> float:
    """Convolution FLOPs per input pixel, counting one multiply-add as 2 FLOPs.

    Measured with forward hooks on every ``nn.Conv2d`` for one ``[1, 3, *size]`` input (256x256 by default, a
    multiple of every network's stride, so no padding inflates it); biases, norms, activations, padding and
    upsampling and the fixed low-pass filters of the alias-free design are not counted (they are memory-bound and
    small in FLOPs).
    """
    total = 0

    def hook(module: nn.Conv2d, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        net(torch.rand(1, 3, *size, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    return total / (size[0] * size[1])
