"""Perceptual losses of Johnson et al. 2016: content, Gram style and total variation on a frozen VGG.

Pixel contract: every image tensor here is float ``[B, 3, H, W]`` RGB in [0, 1]. The loss network applies the
ImageNet normalisation itself (registered buffers), so callers never normalise and no tensor is modified in place.

Defaults and where they come from:

* Layers (Johnson, Alahi and Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
  ECCV 2016): content at VGG16 ``relu2_2``; style at ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``.
* Weights: content 1e5 and style 1e10 are pytorch/examples ``fast_neural_style``'s, which use exactly this
  setup: [0, 1] inputs with ImageNet normalisation, MSE with mean reduction, Gram matrices divided by C*H*W and
  the style loss summed over layers. Their balance depends on all of these conventions; change them together.
* Total variation 1e-6 is the ``tv_strength`` of Johnson's reference code. With :func:`total_variation`'s mean
  reduction on [0, 1] images it is a very small regulariser (a natural image's mean absolute neighbour
  difference is about 0.01 to 0.1, so the term is around 1e-8 against content/style terms of order 1e4 to 1e6);
  pytorch/examples drops it altogether. Raise it if outputs show high-frequency noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from inference.core.errors import OptionError
from styletrain.vgg import IMAGENET_MEAN, IMAGENET_STD, check_layers, load_features

DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("relu2_2",)
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _check_image(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be [B, 3, H, W] RGB in [0, 1], got shape {tuple(x.shape)}")


class LossNetwork(nn.Module):
    """Frozen VGG ``features`` returning the activations of the requested ``reluX_Y`` layers.

    The network is truncated after the deepest requested layer, always stays in eval mode with
    ``requires_grad=False``, and its weights are left out of ``state_dict()`` (they are rebuilt from ``weights``),
    so Lightning checkpoints do not carry tens of megabytes of fixed VGG weights.

    Args:
        arch: ``"vgg16"`` (default, as in Johnson et al.) or ``"vgg19"``.
        weights: ``"imagenet"`` (torchvision weights, downloaded once into the torch hub cache), a path to a local
            torchvision state_dict (``.pth`` or ``.safetensors``, whole model or ``.features``), or ``"random"``
            (tests and dry runs only; warns loudly). See :mod:`styletrain.vgg`.
        layers: Layer names such as ``"relu2_2"``; an unknown name raises a ``UserError`` listing the valid ones.
    """

    def __init__(
        self,
        arch: str = "vgg16",
        weights: str = "imagenet",
        layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.weights = str(weights)
        self.layers = list(dict.fromkeys(layers))  # keep order, drop duplicates
        self._indices = check_layers(arch, self.layers)
        self.features = load_features(arch, self.weights, depth=max(self._indices.values()) + 1)
        self.features.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._by_index = {index: name for name, index in self._indices.items()}
        self.register_state_dict_post_hook(_drop_own_keys)
        self.register_load_state_dict_pre_hook(_fill_own_keys)
        super().train(False)

    def train(self, mode: bool = True) -> LossNetwork:
        """Ignore ``mode``: the loss network is always in eval mode (Lightning calls ``train()`` on the module)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compute the activations.

        Args:
            x: ``[B, 3, H, W]`` RGB in [0, 1].

        Returns:
            ``{layer: [B, C_l, H_l, W_l]}`` for every requested layer (``H_l = H / 2**(block - 1)``, floored).
        """
        _check_image(x, "LossNetwork input")
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            h = module(h)
            if index in self._by_index:
                out[self._by_index[index]] = h
        return out

    def extra_repr(self) -> str:
        return f"arch={self.arch}, weights={self.weights!r}, layers={self.layers}"


def _drop_own_keys(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "features.")]:
        del state_dict[key]


def _fill_own_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    # Checkpoints omit the fixed VGG weights; keep the ones already loaded so strict loading succeeds.
    for key, value in module.features.state_dict().items():
        state_dict.setdefault(prefix + "features." + key, value)


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by C*H*W, computed in float32 (also under autocast).

    Args:
        feat: ``[B, C, H, W]`` activations.

    Returns:
        ``[B, C, C]`` with ``G[b, i, j] = sum_{h,w} F[b,i,h,w] F[b,j,h,w] / (C*H*W)``.
    """
    if feat.ndim != 4:
        raise ValueError(f"gram_matrix expects [B, C, H, W], got shape {tuple(feat.shape)}")
    b, c, h, w = feat.shape
    f = feat.reshape(b, c, h * w).float()
    with torch.autocast(device_type=f.device.type, enabled=False):
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(
    out_feats: Mapping[str, torch.Tensor], target_feats: Mapping[str, torch.Tensor], layers: Sequence[str]
) -> torch.Tensor:
    """Sum over ``layers`` of the mean squared error between output and target activations (float32 scalar)."""
    total = torch.zeros((), device=next(iter(out_feats.values())).device)
    for layer in layers:
        total = total + F.mse_loss(out_feats[layer].float(), target_feats[layer].float())
    return total


def style_loss(
    out_feats: Mapping[str, torch.Tensor], style_grams: Mapping[str, torch.Tensor], layers: Sequence[str]
) -> torch.Tensor:
    """Sum over ``layers`` of the MSE between the output's Gram matrices and the style's.

    Args:
        out_feats: ``{layer: [B, C, H, W]}`` activations of the stylized output.
        style_grams: ``{layer: [1, C, C]}`` (broadcast over the batch) or ``[B, C, C]`` target Grams.
        layers: Layers to use.

    Returns:
        Float32 scalar.
    """
    return summed_terms(style_terms(out_feats, style_grams, layers), next(iter(out_feats.values())).device)


def summed_terms(terms: Mapping[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The sum of scalar ``terms`` in their order, from a float32 zero on ``device`` (0 when there are none)."""
    return sum(terms.values(), torch.zeros((), device=device))


def style_terms(
    out_feats: Mapping[str, torch.Tensor], style_grams: Mapping[str, torch.Tensor], layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``{layer: float32 scalar}``: each layer's MSE between the output's Gram matrices and the style's, the terms
    that :func:`style_loss` sums (arguments as there). Their sizes differ by orders of magnitude between layers
    (with the HED-VGG16 loss net ``relu1_2`` holds nearly all of the sum), so this says which scale a style gap is at.
    """
    terms = {}
    for layer in layers:
        gram = gram_matrix(out_feats[layer])
        terms[layer] = F.mse_loss(gram, style_grams[layer].float().expand_as(gram))
    return terms


def total_variation(img: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 total variation: mean |horizontal difference| + mean |vertical difference|.

    Args:
        img: ``[B, C, H, W]``, any range (the losses use [0, 1]).

    Returns:
        Float32 scalar: 0 for a constant image, ``|a - b|`` for one-pixel vertical stripes alternating between
        ``a`` and ``b``. The mean reduction makes it independent of image size and batch size.
    """
    x = img.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def weighted_sum(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum(weights[k] * terms[k])`` over the terms present (the training objective's ``total``).

    Args:
        terms: Raw (unweighted) scalar loss terms, e.g. ``{"content", "style", "tv"[, "temporal"]}``.
        weights: A weight for every key of ``terms``.

    Returns:
        The weighted sum, a scalar tensor.
    """
    return sum(weights[name] * value for name, value in terms.items())


class PerceptualLoss(nn.Module):
    """The one assembly of content + Gram style + TV terms from VGG features, used by training, evaluation and bench.

    Call :meth:`set_style` once per run: the style Gram matrices are computed a single time and kept as
    (non-persistent) buffers, so they follow ``.to(device)`` but are recomputed from the style image on resume.
    :meth:`forward` returns the raw (unweighted) terms; :attr:`weights` and :func:`weighted_sum` make the objective.

    Args:
        content_weight: Weight of the content loss (default 1e5, pytorch/examples fast_neural_style).
        style_weight: Weight of the style loss (default 1e10, same source).
        tv_weight: Weight of the total variation (default 1e-6, Johnson et al.'s code; see module docstring).
        content_layers: VGG layers for the content loss (default ``relu2_2``, Johnson et al. 2016).
        style_layers: VGG layers for the style loss (default ``relu1_2, relu2_2, relu3_3, relu4_3``).
        arch: Loss network architecture, ``"vgg16"`` or ``"vgg19"``.
        vgg_weights: ``"imagenet"``, a local state_dict path, or ``"random"`` (tests only); see :class:`LossNetwork`.
        loss_network: An existing :class:`LossNetwork` to share (its layers must cover the ones above).
    """

    def __init__(
        self,
        content_weight: float = 1e5,
        style_weight: float = 1e10,
        tv_weight: float = 1e-6,
        content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
        style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
        *,
        arch: str = "vgg16",
        vgg_weights: str = "imagenet",
        loss_network: LossNetwork | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("content", content_weight), ("style", style_weight), ("tv", tv_weight)):
            if value < 0:
                raise OptionError(f"{name}_weight", f"must be >= 0, got {value}")
        self.weights = {"content": content_weight, "style": style_weight, "tv": tv_weight}
        self.content_layers, self.style_layers = list(content_layers), list(style_layers)
        needed = list(dict.fromkeys(self.content_layers + self.style_layers))
        if loss_network is None:
            loss_network = LossNetwork(arch, vgg_weights, needed)
        elif missing := [layer for layer in needed if layer not in loss_network.layers]:
            raise ValueError(f"the shared loss network lacks layers {missing}")
        self.loss_network = loss_network

    @property
    def has_style(self) -> bool:
        """Whether :meth:`set_style` has been called."""
        return all(hasattr(self, f"style_gram_{layer}") for layer in self.style_layers)

    @property
    def style_grams(self) -> dict[str, torch.Tensor]:
        """``{layer: [1, C, C]}`` float32 Gram matrices of the style image."""
        if not self.has_style:
            raise RuntimeError("PerceptualLoss.set_style(style_image) must be called before computing losses")
        return {layer: getattr(self, f"style_gram_{layer}") for layer in self.style_layers}

    @torch.no_grad()
    def set_style(self, style_image: torch.Tensor) -> None:
        """Compute and store the style Gram matrices once, in float32 outside autocast (they serve a whole run).

        Args:
            style_image: ``[1, 3, H, W]`` RGB in [0, 1] (see :func:`styletrain.data.images.load_style_image`).
        """
        _check_image(style_image, "style_image")
        if style_image.shape[0] != 1:
            raise ValueError(f"style_image must hold one image, got batch size {style_image.shape[0]}")
        if style_image.min() < -0.01 or style_image.max() > 1.01:
            raise ValueError("style_image must be in [0, 1] (got values outside; 0-255 pixels?)")
        device = self.loss_network.mean.device
        with torch.autocast(device.type, enabled=False):
            feats = self.loss_network(style_image.to(device=device, dtype=torch.float32))
        for layer in self.style_layers:
            self.register_buffer(f"style_gram_{layer}", gram_matrix(feats[layer]).detach(), persistent=False)

    def forward(
        self,
        output: torch.Tensor,
        content: torch.Tensor,
        with_style: bool = True,
        style_grams: dict[str, torch.Tensor] | None = None,
        style_by_layer: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Compute the raw loss terms.

        Args:
            output: Stylized images ``[B, 3, H, W]`` in [0, 1] (gradients flow through it).
            content: The content images the output was made from, same shape, in [0, 1] (used as a fixed target).
            with_style: Include the style term (``False`` where no style image is known, e.g. ``evaluate``).
            style_grams: Targets ``{layer: [B, C, C]}`` used instead of the stored ones: each sample's own style in a
                multi-style run.
            style_by_layer: Also return each style layer's term as ``style/<layer>`` (``evaluate``; training's
                weighted sum takes only the named terms).

        Returns:
            Unweighted float32 scalars ``content``, ``style`` (when ``with_style``) and ``tv``, each a mean over the
            batch (see :func:`content_loss`, :func:`style_loss`, :func:`total_variation`).
        """
        _check_image(output, "output")
        if content.shape != output.shape:
            raise ValueError(f"content {tuple(content.shape)} and output {tuple(output.shape)} differ in shape")
        grams = (style_grams if style_grams is not None else self.style_grams) if with_style else None
        batch = output.shape[0]
        # One VGG pass over output and content together: fewer, larger kernels than two passes.
        feats = self.loss_network(torch.cat([output, content.detach().to(output.dtype)], dim=0))
        # The losses in float32 outside autocast: Gram matrices lose too much precision in bf16.
        with torch.autocast(output.device.type, enabled=False):
            out_feats = {k: v[:batch].float() for k, v in feats.items()}
            target_feats = {k: v[batch:].detach().float() for k, v in feats.items() if k in self.content_layers}
            terms = {"content": content_loss(out_feats, target_feats, self.content_layers)}
            if grams is not None:
                by_layer = style_terms(out_feats, grams, self.style_layers)
                terms["style"] = summed_terms(by_layer, output.device)
                if style_by_layer:
                    terms |= {f"style/{layer}": term for layer, term in by_layer.items()}
            terms["tv"] = total_variation(output)
        return terms

    @torch.no_grad()
    def reference_terms(
        self, content: torch.Tensor, style_grams: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The content images' own terms, the units of relative weights (:mod:`styletrain.loss_weights`).

        Args:
            content: ``[B, 3, H, W]`` RGB in [0, 1].
            style_grams: Per-sample targets as in :meth:`forward` (default: the stored style).

        Returns:
            Float32 scalars ``ref_content`` (feature energy at the content layers, ``sum_layers mean(F**2)``),
            ``ref_style`` (the images' own style term) and ``ref_tv`` (their total variation).
        """
        _check_image(content, "content")
        grams = style_grams if style_grams is not None else self.style_grams
        with torch.autocast(content.device.type, enabled=False):
            feats = {k: v.float() for k, v in self.loss_network(content.float()).items()}
            energy = sum(feats[layer].square().mean() for layer in self.content_layers)
            return {
                "ref_content": energy,
                "ref_style": style_loss(feats, grams, self.style_layers),
                "ref_tv": total_variation(content),
            }
