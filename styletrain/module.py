"""The LightningModule: one transformer net trained against one style image, or several (one multi-style net).

Its constructor arguments are the ``--model.*`` schema of the ``styletrain`` CLI: the style and the networks at the
top, the perceptual loss, the temporal loss and the schedule as typed groups (``--model.loss.*``,
``--model.temporal.*``, ``--model.schedule.*``; :mod:`styletrain.module_config`), the optimizer as a callable
(``--model.optimizer``). The network architecture is owned by the runtime
(:func:`inference.model.networks.build_network`); this module wraps it as ``self.net`` and adds the frozen loss
network, the style targets and the optimisation.

Loss terms are kept in a dict (``content``, ``style``, ``tv``, ``temporal``, ``temporal_feature``) of raw
(unweighted) values: :class:`styletrain.losses.PerceptualLoss` gives the first three, :class:`TemporalLoss` the
others, and :meth:`StyleTransferModule.loss_terms` merges them with ``total = sum(weight[k] * term[k])``
(:func:`styletrain.losses.weighted_sum`). Adding a term means one loss and one weight.

With several style images the net gets one set of normalisation scales and shifts per style (conditional instance
norm, :mod:`inference.model.layers`); every batch cycles through the styles sample by sample, so each style gets an
equal share, and each sample's style loss uses its own style's Grams (computed once per style).

Checkpoints hold only ``net.*``: the VGG loss network is frozen and rebuilt from its weights argument, and the style
Gram matrices are non-persistent buffers recomputed at start-up, so a checkpoint of the standard net is ~7 MB.
"""

from __future__ import annotations

import json
import math
import os
from typing import IO, Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor

from inference.core.errors import OptionError
from inference.core.hashing import sha256_of_file
from inference.model.artifact import clean_state_dict
from inference.model.networks import build_network
from styletrain.data.images import load_style_image, style_paths
from styletrain.equivariance import one_pixel_shift_error
from styletrain.loss_weights import PerceptualBalance, TemporalBalance
from styletrain.losses import PerceptualLoss, weighted_sum
from styletrain.module_config import (
    INSTANTIATOR,
    LossConfig,
    ScheduleConfig,
    TemporalConfig,
    plain_groups,
    upgrade_hparams,
)
from styletrain.output_stats import contrast
from styletrain.temporal.loss import TemporalLoss
from styletrain.temporal.motion import random_motion_pair

# The frozen VGG inside the perceptual loss: rebuilt from its weights argument, never saved.
LOSS_NET_PREFIX = "perceptual.loss_network."

# The groups' defaults. Frozen dataclasses are values, like tuples: a shared default instance cannot be changed by
# one module and seen by the next, which is what the rule against instances as defaults guards against.
_LOSS, _TEMPORAL, _SCHEDULE = LossConfig(), TemporalConfig(), ScheduleConfig()


class StyleTransferModule(pl.LightningModule):
    """Train a feed-forward style network with perceptual (and optionally temporal) losses.

    The losses, the temporal term and the schedule are typed groups (:mod:`styletrain.module_config`), the optimizer
    a callable: ``StyleTransferModule("p.jpg", loss=LossConfig(style_weight=3e10), optimizer=partial(Adam, lr=5e-4))``
    in Python, ``--model.loss.style_weight 3e10 --model.optimizer.lr 5e-4`` on the command line.

    Args:
        style: Path to the style image (any size, grayscale/RGBA/16-bit are converted), or a list of paths to
            train one network for several styles (named by their file stems, which must differ).
        style_size: Longest side the style image is resized to before computing its Gram matrices; None keeps it.
        network: Registry name of the transformer net (``johnson``, ``light``, ``tiny``).
        network_kwargs: Constructor arguments of that network (e.g. ``{"channels": [16, 32, 64]}``).
        vgg: Loss network, ``vgg16`` or ``vgg19``.
        vgg_weights: ``imagenet`` (torchvision download, cached), a local ``.pth`` path, or ``random`` (tests only).
        loss: The perceptual loss: layers, weights, or weights relative to the content term.
        temporal: The temporal loss, off by default (trains on frame pairs when on).
        optimizer: Builds the optimizer from the net's parameters; default Adam at its defaults (learning rate 1e-3,
            betas (0.9, 0.999), no weight decay), as in Johnson et al. 2016.
        schedule: Learning-rate warm-up and decay, per step.
        channels_last: Run the transformer net in channels-last memory format. Worth trying only together with
            ``compile``: in eager mode every ReflectionPad2d returns NCHW, so each layer converts back and forth.
        compile: ``torch.compile`` the transformer net (only the net; the exported weights are unaffected).
    """

    def __init__(
        self,
        style: list[str] | str,
        *,
        style_size: int | None = 512,
        network: str = "johnson",
        network_kwargs: dict[str, Any] | None = None,
        vgg: Literal["vgg16", "vgg19"] = "vgg16",
        vgg_weights: str = "imagenet",
        loss: LossConfig = _LOSS,
        temporal: TemporalConfig = _TEMPORAL,
        optimizer: OptimizerCallable = torch.optim.Adam,
        schedule: ScheduleConfig = _SCHEDULE,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # the CLI's config as given, else these arguments
        hparams = dict(self.hparams)
        plain_groups(hparams)
        self.save_hyperparameters(hparams)  # plain data: checkpoints load with weights_only=True
        _check_choices(**{"schedule.decay": schedule.decay, "temporal.balance_against": temporal.balance_against})
        self.loss_config, self.temporal_config, self.schedule_config = loss, temporal, schedule
        self.optimizer_factory = optimizer
        # Read the style images now so that a bad path fails before any training machinery starts.
        self._load_styles(style, style_size)
        self.net = _build_net(network, _with_styles(network_kwargs, self.num_styles), channels_last, compile)
        self._all_grams: dict[str, Tensor] | None = None  # {layer: [S, C, C]}, on the module's device
        # Its VGG weights and style Grams are never in checkpoints nor artifacts (see PerceptualLoss).
        self.perceptual = PerceptualLoss(
            loss.content_weight,
            loss.style_weight,
            loss.tv_weight,
            loss.content_layers,
            loss.style_layers,
            arch=vgg,
            vgg_weights=vgg_weights,
        )
        self.perceptual_balance = _perceptual_balance(loss)
        self.temporal_balance = _temporal_balance(temporal)
        self._motion_gen: torch.Generator | None = None  # created on the training device at first use
        self.temporal_on = temporal.enabled
        self.temporal = TemporalLoss(feature=temporal.feature_weight > 0, luminance=temporal.luminance)
        self.motion = temporal.motion
        weights = {"temporal": temporal.weight, "temporal_feature": temporal.feature_weight}
        self.loss_weights = self.perceptual.weights | weights
        # The full resolved CLI config (set by the CLI); saved in checkpoints and artifacts.
        self.run_config: dict[str, Any] | None = None

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | os.PathLike[str] | IO[bytes], *args: Any, **kwargs: Any
    ) -> StyleTransferModule:
        """Lightning's ``load_from_checkpoint``, for checkpoints of either layout.

        A checkpoint written before the parameter groups holds flat hyper-parameters (``lr``, ``temporal_weight``,
        ...), which Lightning would pass over without a word: they are mapped to the groups first
        (:func:`~styletrain.module_config.upgrade_hparams`). ``kwargs`` override the checkpoint's values, as in
        Lightning.
        """
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if hasattr(checkpoint_path, "seek"):
            checkpoint_path.seek(0)  # a file object: Lightning reads it again
        hparams = upgrade_hparams(checkpoint.get("hyper_parameters") or {})
        hparams.setdefault("_instantiator", INSTANTIATOR)
        return super().load_from_checkpoint(checkpoint_path, *args, **(hparams | kwargs))

    def _load_styles(self, style: list[str] | str, style_size: int | None) -> None:
        """Read every style image (``[1, 3, H, W]`` in [0, 1], not buffers) with its name and sha256."""
        self.style_paths = style_paths(style)
        self.num_styles = len(self.style_paths)
        self.style_names = [p.stem for p in self.style_paths]
        self.style_images = [load_style_image(p, style_size) for p in self.style_paths]
        self.style_sha256s = [sha256_of_file(p) for p in self.style_paths]
        # The first style under the single-style names that callers and callbacks use.
        self.style_path, self.style_image, self.style_sha256 = (
            self.style_paths[0],
            self.style_images[0],
            self.style_sha256s[0],
        )

    # ----------------------------------------------------------------------------------------------- forward

    def forward(self, x: Tensor, style: int | None = None) -> Tensor:
        """Stylize ``x`` ``[B, 3, H, W]`` in [0, 1] with style number ``style`` (default the first); returns
        ``[B, 3, H, W]`` in [0, 1]."""
        styles = None if style is None else torch.full((x.shape[0],), int(style), device=x.device)
        return self._stylize(x, features=False, styles=styles)[0]

    def _stylize(self, x: Tensor, features: bool, styles: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Run the net; ``styles`` is the ``[B]`` style index of each sample (multi-style nets only)."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        weights = None if styles is None or self.num_styles == 1 else F.one_hot(styles, self.num_styles).float()
        if features:
            return self.net(x, return_features=True, style=weights)
        return self.net(x, style=weights), None

    # ----------------------------------------------------------------------------------------------- losses

    def style_grams(self) -> dict[str, Tensor]:
        """Style Gram matrices ``{layer: [1, C, C]}`` on the module's device (computed on first use)."""
        self._ensure_style_targets()
        return self.perceptual.style_grams

    def _ensure_style_targets(self) -> None:
        """Compute the Gram targets once per style (again only after a move to another device)."""
        perceptual = self.perceptual
        if self._all_grams is not None and next(iter(self._all_grams.values())).device == self.device:
            return
        per_style = []
        for image in reversed(self.style_images):  # the first style last: the loss keeps it as its default target
            perceptual.set_style(image)
            per_style.append(perceptual.style_grams)
        per_style.reverse()
        self._all_grams = {layer: torch.cat([g[layer] for g in per_style]) for layer in perceptual.style_layers}

    def style_indices(self, batch_size: int, offset: int) -> Tensor | None:
        """``[B]`` style index of each sample, cycling through the styles from ``offset`` (``None`` for one style).

        Consecutive samples get consecutive styles and the offset moves on with every batch, so all styles get the
        same share even when a batch is smaller than the number of styles.
        """
        if self.num_styles == 1:
            return None
        return (torch.arange(batch_size, device=self.device) + offset) % self.num_styles

    def _targets(self, styles: Tensor | None) -> dict[str, Tensor] | None:
        """Each sample's own style Grams ``{layer: [B, C, C]}``, or ``None`` (the loss's stored single style)."""
        if styles is None or self._all_grams is None:
            return None
        return {layer: grams[styles] for layer, grams in self._all_grams.items()}

    def _pair(self, batch: dict[str, Tensor], generator: torch.Generator | None) -> tuple[Tensor, ...] | None:
        """``(frame1, frame2, flow, mask)`` for the temporal loss, or None when training on stills only."""
        if "frame1" in batch:
            return batch["frame1"], batch["frame2"], batch["flow"], batch["mask"]
        if not self.temporal_on:
            return None
        pair = random_motion_pair(batch["content"], generator=generator, config=self.motion)
        return pair.frame1, pair.frame2, pair.flow, pair.mask

    def loss_terms(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None, style_offset: int = 0
    ) -> dict[str, Tensor]:
        """All loss terms for one batch, raw, plus the weighted ``total`` (see :meth:`stylized_terms`)."""
        return self.stylized_terms(batch, generator, style_offset)[0]

    def stylized_terms(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None, style_offset: int = 0
    ) -> tuple[dict[str, Tensor], Tensor]:
        """All loss terms for one batch, raw, plus the weighted ``total``, and the stylized frames they came from.

        Args:
            batch: ``{"content": [B, 3, H, W]}`` or ``{"frame1", "frame2", "flow", "mask"}`` (see the flow convention
                in :mod:`styletrain.temporal.loss`), images in [0, 1].
            generator: Random generator for synthetic motion (fixed for validation).
            style_offset: Style of the first sample in a multi-style run (see :meth:`style_indices`); both frames of
                a pair get the same style.

        Returns:
            ``({"content", "style", "tv"[, "temporal"[, "temporal_feature"]], "total"}`` scalar tensors, the outputs
            ``[B, 3, H, W]`` in [0, 1]; for a pair batch ``[2B, ...]``, the first frames first).
        """
        self._ensure_style_targets()
        pair = self._pair(batch, generator)
        styles = self.style_indices(_batch_size(batch), style_offset)
        if self.training and self.perceptual_balance is not None and not self.perceptual_balance.frozen:
            # The clean stills (frame1 of a real pair): the same images with and without the temporal term.
            clean = batch["content"] if "content" in batch else batch["frame1"]
            self.perceptual_balance.observe(self.perceptual.reference_terms(clean, self._targets(styles)))
        if pair is None:
            content = batch["content"]
            out, _ = self._stylize(content, features=False, styles=styles)
            terms = self.perceptual(out, content, style_grams=self._targets(styles))
        else:
            frame1, frame2, flow, mask = pair
            inputs = torch.cat([frame1, frame2])
            styles = None if styles is None else torch.cat([styles, styles])
            # Both frames in one forward; the perceptual losses use both, the temporal loss compares them.
            out, feats = self._stylize(inputs, features=self.temporal_config.feature_weight > 0, styles=styles)
            terms = self.perceptual(out, inputs, style_grams=self._targets(styles))
            if self.temporal_on:
                out1, out2 = out.float().chunk(2)
                feat1, feat2 = feats.float().chunk(2) if feats is not None else (None, None)
                with torch.autocast(self.device.type, enabled=False):
                    terms.update(
                        self.temporal(out1, out2, flow, mask, in1=frame1, in2=frame2, feat1=feat1, feat2=feat2)
                    )
        terms["total"] = weighted_sum(terms, self._weights(terms))
        return terms, out

    def _weights(self, terms: dict[str, Tensor]) -> dict[str, Any]:
        """The loss weights. With relative perceptual weights, style and TV weights come from the content images'
        reference terms (:class:`PerceptualBalance`); with a temporal balance, the temporal weight is calibrated from
        this step's terms while training (see :class:`TemporalBalance`). Both read their frozen state otherwise."""
        weights = dict(self.loss_weights)
        if self.perceptual_balance is not None:
            weights |= self.perceptual_balance.weights(weights["content"])
        if self.temporal_balance is None or "temporal" not in terms:
            return weights
        if self.training:
            self.temporal_balance.observe(self._temporal_reference(terms, weights), terms["temporal"])
        return weights | {"temporal": self.temporal_balance.weight.float()}

    def _temporal_reference(self, terms: dict[str, Tensor], weights: dict[str, Any]) -> Tensor:
        """What the temporal balance is relative to: the weighted content term, or the whole weighted perceptual
        objective (content + style + TV), per ``temporal.balance_against``."""
        keys = ("content",) if self.temporal_config.balance_against == "content" else ("content", "style", "tv")
        return sum(weights[k] * terms[k].detach() for k in keys if k in terms)

    def motion_generator(self) -> torch.Generator:
        """The synthetic motion's private generator on the module's device, seeded from ``temporal.motion_seed``, this
        process's rank and the step it is created at (so resumed and DDP runs draw fresh, reproducible motion)."""
        if self._motion_gen is None or self._motion_gen.device != self.device:
            rank = self.global_rank if self._trainer is not None else 0
            seed = (int(self.temporal_config.motion_seed) * 1_000_003 + rank * 7919 + self.global_step) % (1 << 63)
            self._motion_gen = torch.Generator(device=self.device).manual_seed(seed)
        return self._motion_gen

    # ----------------------------------------------------------------------------------------------- steps

    def on_fit_start(self) -> None:
        self._ensure_style_targets()

    def on_validation_start(self) -> None:
        self._ensure_style_targets()

    def _progress_due(self, batch_idx: int) -> bool:
        """Whether this step shows the loss on the progress bar: the first step and every ``log_every_n_steps``."""
        every = int(getattr(self._trainer, "log_every_n_steps", 1) or 0)
        return batch_idx == 0 or (every > 0 and (batch_idx + 1) % every == 0)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        size = _batch_size(batch)
        generator = self.motion_generator() if self.temporal_on else None
        terms = self.loss_terms(batch, generator=generator, style_offset=self.global_step * size)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items() if k != "total"}, batch_size=size)
        self.log("train/total", terms["total"].detach(), batch_size=size)
        if self._progress_due(batch_idx):
            # The progress bar turns its values into Python numbers, a wait for the device: only on logging steps.
            self.log("loss", terms["total"].detach(), prog_bar=True, logger=False, batch_size=size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=size)
        if self.temporal_balance is not None:
            self.log("train/temporal_weight", self.temporal_balance.weight.float(), batch_size=size)
        if self.perceptual_balance is not None:
            self.log("train/style_weight", self.perceptual_balance.weights(1.0)["style"], batch_size=size)
        return terms["total"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # A fixed generator per batch: the synthetic motion, hence val/temporal, is the same at every validation.
        generator = torch.Generator(device=self.device).manual_seed(1000 + batch_idx) if self.temporal_on else None
        size = _batch_size(batch)
        terms, out = self.stylized_terms(batch, generator=generator, style_offset=batch_idx * size)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, batch_size=size, sync_dist=True)
        # The guard against a fading style: a temporal loss must not buy its stability by flattening the output.
        self.log("val/contrast", contrast(out[:size].float()), batch_size=size, sync_dist=True)
        # Flicker born in the network: how far a one-pixel shift of the input is from shifting the output
        # (relative to the output's spread; 0 for a network equivariant to shifts, see styletrain/equivariance.py).
        stills = batch["content"] if "content" in batch else batch["frame1"]
        if min(stills.shape[-2:]) >= 24:
            self.log("val/shift_error", one_pixel_shift_error(self.net, stills), batch_size=size, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        """The injected optimizer over the net's parameters (never the loss net's), and the schedule per step."""
        optimizer = self.optimizer_factory(self.net.parameters())
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warmup, cosine = int(self.schedule_config.warmup_steps), self.schedule_config.decay == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if cosine:
                progress = min(1.0, (step - warmup) / max(1, total - warmup))
                return 0.5 * (1.0 + math.cos(math.pi * progress))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------------------------- checkpoints

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Strict loading of ``net.*`` (the loss network fills in its own frozen weights, see :class:`LossNetwork`).

        Wrapper segments (:func:`~inference.model.artifact.clean_state_dict`) are removed so compiled runs resume
        uncompiled and vice versa.
        """
        return super().load_state_dict(clean_state_dict(state_dict), strict=strict, assign=assign)

    def artifact_metadata(self) -> dict[str, Any]:
        """What :func:`inference.model.artifact.save_artifact` needs besides the weights (all JSON-friendly)."""
        config = self.run_config if self.run_config is not None else {"model": dict(self.hparams)}
        return {
            "network": self.net.name,
            "network_kwargs": json.loads(json.dumps(self.net.config, default=list)),
            "style_name": self.style_names[0],
            "style_sha256": self.style_sha256,
            "styles": [[name, digest] for name, digest in zip(self.style_names, self.style_sha256s, strict=True)],
            "config": json.loads(json.dumps(config, default=str)) | self._calibration(),
            "temporal": bool(self.temporal_on),
        }

    def _calibration(self) -> dict[str, Any]:
        """The calibrated weights, recorded in artifacts next to the config (empty without balances)."""
        out: dict[str, Any] = {}
        if (pb := self.perceptual_balance) is not None:
            weights = pb.weights(float(self.loss_weights["content"]))
            out["perceptual_calibration"] = {
                "style_balance": pb.style_balance,
                "tv_balance": pb.tv_balance,
                "steps_seen": int(pb.seen),
                "style_weight": float(weights["style"]),
                "tv_weight": float(weights["tv"]),
            }
        if self.temporal_balance is None:
            return out
        tb = self.temporal_balance
        return out | {
            "temporal_calibration": {
                "balance": tb.balance,
                "steps": tb.steps,
                "steps_seen": int(tb.seen),
                "weight": float(tb.weight),
            }
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["styletrain"] = self.artifact_metadata()
        # Belt and braces for strategies that gather the state dict themselves.
        for key in [k for k in checkpoint.get("state_dict", {}) if LOSS_NET_PREFIX in k]:
            del checkpoint["state_dict"][key]


def _build_net(
    network: str, network_kwargs: dict[str, Any] | None, channels_last: bool, compile: bool
) -> torch.nn.Module:
    """The transformer net from the runtime's registry, in the requested memory format, compiled if asked."""
    net = build_network(network, **(network_kwargs or {}))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if compile:
        # In-place Module.compile keeps the state-dict keys free of the ``_orig_mod.`` prefix.
        net.compile()
    return net


def _with_styles(network_kwargs: dict[str, Any] | None, num_styles: int) -> dict[str, Any]:
    """The network arguments with ``num_styles`` for a multi-style run (it must agree with the style images)."""
    kwargs = dict(network_kwargs or {})
    given = kwargs.pop("num_styles", num_styles)
    if int(given) != num_styles:
        raise OptionError("network_kwargs", f"num_styles={given} but {num_styles} style images were given")
    return kwargs | ({"num_styles": num_styles} if num_styles > 1 else {})


def _temporal_balance(temporal: TemporalConfig) -> TemporalBalance | None:
    """The calibrator for ``temporal.balance``, after checking it excludes ``temporal.weight``."""
    if temporal.balance is None:
        return None
    if temporal.weight > 0:
        raise OptionError(
            "temporal.weight",
            "and `temporal.balance` are mutually exclusive: set one "
            "(`temporal.balance` null to use an absolute weight, e.g. over configs/video.yaml)",
            mentions=("temporal.balance",),
        )
    try:
        return TemporalBalance(temporal.balance, temporal.calibration_steps)
    except ValueError as exc:
        raise OptionError("temporal.balance", f"settings are invalid: {exc}") from None


_CHOICES = {"schedule.decay": ("constant", "cosine"), "temporal.balance_against": ("content", "perceptual")}


def _check_choices(**values: str) -> None:
    """A one-line :class:`OptionError` for a value outside its field's choices (:data:`_CHOICES`); the CLI's parser
    checks these already, a module built in Python is checked here."""
    for name, value in values.items():
        if value not in _CHOICES[name]:
            raise OptionError(name, f": unknown value {value!r}; available: {', '.join(_CHOICES[name])}")


def _perceptual_balance(loss: LossConfig) -> PerceptualBalance | None:
    """The calibrator for ``loss.style_balance`` (None keeps the style and TV weights absolute)."""
    if loss.style_balance is None:
        return None
    try:
        return PerceptualBalance(loss.style_balance, loss.tv_balance, loss.calibration_steps)
    except ValueError as exc:
        raise OptionError("loss.style_balance", f"settings are invalid: {exc}") from None


def _batch_size(batch: dict[str, Tensor]) -> int:
    return int((batch["frame1"] if "frame1" in batch else batch["content"]).shape[0])
