"""The parameter groups of :class:`~styletrain.module.StyleTransferModule`, and the map from the older flat layout.

Each group is a frozen dataclass; LightningCLI exposes its fields as nested keys (``--model.loss.style_weight``,
``model: loss: style_weight:`` in YAML), with the defaults and the descriptions written here once. The optimizer is
not a group but a callable (``--model.optimizer Adam --model.optimizer.lr 5e-4``), as Lightning's CLI documents.

Checkpoints written before the groups hold flat hyper-parameters (``lr``, ``temporal_balance``, ...):
:func:`upgrade_hparams` maps them, and :data:`FLAT_NAMES` is the one table it reads (the CLI's ``flag_of`` reads it
too, for libraries that name a field by its flat name).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from styletrain.losses import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from styletrain.temporal.motion import MotionConfig


@dataclass(frozen=True)
class LossConfig:
    """The perceptual loss (``--model.loss.*``): layers and weights (the paper's defaults), or relative weights.

    Attributes:
        content_layers: VGG layers of the content (feature reconstruction) loss.
        style_layers: VGG layers of the Gram style loss.
        content_weight: Weight of the content loss.
        style_weight: Weight of the style loss (Grams normalised by C*H*W).
        tv_weight: Weight of the total-variation regulariser.
        style_balance: Relative perceptual weights (:mod:`styletrain.loss_weights`): ``None`` keeps ``style_weight``
            and ``tv_weight`` absolute (their meaning depends on the loss net's feature scale); a number sets the
            style weight so that, on the content images, the weighted style term is this multiple of the weighted
            content energy (calibrated over ``calibration_steps`` batches, then frozen), which means the same for
            any loss net.
        tv_balance: With ``style_balance``: the weighted TV term as a multiple of the weighted content energy.
        calibration_steps: Training batches averaged to calibrate ``style_balance`` and ``tv_balance``.
    """

    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    content_weight: float = 1e5
    style_weight: float = 1e10
    tv_weight: float = 1e-6
    style_balance: float | None = None
    tv_balance: float = 0.0
    calibration_steps: int = 10


@dataclass(frozen=True)
class TemporalConfig:
    """The temporal loss (``--model.temporal.*``); off by default. Any weight or a balance trains on frame pairs
    (synthetic motion for still images, real pairs when the data module provides them).

    Attributes:
        weight: Absolute weight of the output-level temporal loss. Its meaning depends on the loss network's scale;
            prefer ``balance``. Mutually exclusive with it.
        balance: Temporal loss strength relative to the content term: the weighted temporal term starts at this
            multiple of the weighted content term (the weight is calibrated over the first ``calibration_steps``
            training steps, then frozen; see :mod:`styletrain.loss_weights`). Carries over between loss networks.
        calibration_steps: Training steps averaged to calibrate ``balance``.
        balance_against: What the balance is a multiple of: the weighted ``content`` term, or the whole weighted
            ``perceptual`` objective (content + style + TV), which keeps the temporal term's share when the style
            term dominates.
        feature_weight: Weight of the feature-level temporal loss on the net's 1/4-resolution features.
        luminance: Let the output change where the input's luminance changes (temporal loss variant).
        motion: Ranges of the synthetic motion for still images (:class:`~styletrain.temporal.motion.MotionConfig`).
        motion_seed: Seed of the synthetic motion's private random generator. Private, so the motion draws no
            numbers from the global generator: a run with the temporal term starts from the same weights and sees
            the same images in the same order as the same run without it (a matched comparison).
    """

    weight: float = 0.0
    balance: float | None = None
    calibration_steps: int = 50
    balance_against: Literal["content", "perceptual"] = "content"
    feature_weight: float = 0.0
    luminance: bool = False
    motion: MotionConfig = field(default_factory=MotionConfig)
    motion_seed: int = 0

    @property
    def enabled(self) -> bool:
        """Whether training uses frame pairs and the temporal loss."""
        return self.weight > 0 or self.feature_weight > 0 or self.balance is not None


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule (``--model.schedule.*``), stepped every optimisation step.

    Attributes:
        decay: ``constant`` (no decay) or ``cosine`` (to 0 at the last step), after the warm-up.
        warmup_steps: Linear learning-rate warm-up steps.
    """

    decay: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0


INSTANTIATOR = "pytorch_lightning.cli.instantiate_module"
"""Lightning's loader for hyper-parameters that are a CLI config (plain data): it rebuilds the groups and the
optimizer callable from them, so a module built in Python loads like one built by the CLI."""

FLAT_NAMES: dict[str, str] = {
    "content_layers": "loss.content_layers",
    "style_layers": "loss.style_layers",
    "content_weight": "loss.content_weight",
    "style_weight": "loss.style_weight",
    "tv_weight": "loss.tv_weight",
    "style_balance": "loss.style_balance",
    "tv_balance": "loss.tv_balance",
    "perceptual_calibration_steps": "loss.calibration_steps",
    "temporal_weight": "temporal.weight",
    "temporal_balance": "temporal.balance",
    "temporal_calibration_steps": "temporal.calibration_steps",
    "temporal_balance_against": "temporal.balance_against",
    "temporal_feature_weight": "temporal.feature_weight",
    "temporal_luminance": "temporal.luminance",
    "motion": "temporal.motion",
    "motion_seed": "temporal.motion_seed",
    "lr": "optimizer.init_args.lr",
    "betas": "optimizer.init_args.betas",
    "weight_decay": "optimizer.init_args.weight_decay",
    "lr_schedule": "schedule.decay",
    "warmup_steps": "schedule.warmup_steps",
}
"""Each flat hyper-parameter of the layout before the groups -> its dotted place in the grouped hyper-parameters."""

DROPPED_NAMES = ("export_path",)
"""Flat hyper-parameters with no place in the module any more: the artifact's path is the artifact callback's
(``--artifact.path``), so it is said once."""

OLD_OPTIMIZER = "torch.optim.Adam"
"""The optimizer of every flat-layout checkpoint (it had Adam's ``lr``, ``betas`` and ``weight_decay`` only)."""


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Map a checkpoint's flat hyper-parameters (the layout before the groups) to the grouped ones.

    ``{"lr": 1e-2, "temporal_balance": 0.1, "network": "tiny", ...}`` becomes ``{"optimizer": {"class_path":
    "torch.optim.Adam", "init_args": {"lr": 1e-2}}, "temporal": {"balance": 0.1}, "network": "tiny", ...}``: names
    in :data:`FLAT_NAMES` move into their group, :data:`DROPPED_NAMES` go, every other key stays. Grouped
    hyper-parameters come back unchanged, so this can be applied to any checkpoint.

    Args:
        hparams: A checkpoint's ``hyper_parameters``, either layout.

    Returns:
        A new dict in the grouped layout, plain data (what the CLI parses); fields left out keep their defaults.
    """
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if key in DROPPED_NAMES or (key == "motion" and value is None):  # no motion overrides: the defaults
            continue
        *groups, name = FLAT_NAMES.get(key, key).split(".")
        target = out
        for group in groups:
            target = target.setdefault(group, {})
        target[name] = value
    optimizer = out.get("optimizer")
    if isinstance(optimizer, dict) and "class_path" not in optimizer:
        optimizer["class_path"] = OLD_OPTIMIZER
    return out


def plain_groups(hparams: dict[str, Any]) -> None:
    """Write a module's groups and optimizer as plain data in its hyper-parameters, in place.

    Checkpoints are read with ``torch.load(weights_only=True)`` (export, ``--ckpt_path``), which refuses dataclass
    instances and functions: a module built in Python records what the CLI would (``loss: {...}``, ``optimizer:
    {class_path, init_args}``), and the loader that rebuilds them (:data:`INSTANTIATOR`).
    """
    for key, value in hparams.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            hparams[key] = dataclasses.asdict(value)
    if callable(hparams.get("optimizer")):
        hparams["optimizer"] = callable_config(hparams["optimizer"])
    hparams.setdefault("_instantiator", INSTANTIATOR)


def callable_config(factory: Callable[..., Any]) -> dict[str, Any] | str:
    """``{"class_path", "init_args"}`` of an optimizer callable: a class (``torch.optim.Adam``), or a
    ``functools.partial`` of one (what jsonargparse and ``partial(Adam, lr=1e-2)`` give). Anything else (a lambda)
    cannot be rebuilt from data and is recorded by its name only."""
    init_args: dict[str, Any] = {}
    while isinstance(factory, functools.partial):
        init_args = dict(factory.keywords) | init_args
        classes = [a for a in factory.args if isinstance(a, type)]
        factory = classes[-1] if classes else factory.func
    if not isinstance(factory, type):
        return getattr(factory, "__qualname__", repr(factory))
    config: dict[str, Any] = {"class_path": f"{factory.__module__}.{factory.__qualname__}"}
    return config | ({"init_args": init_args} if init_args else {})
