"""The module's parameter groups and optimizer callable: built in Python, recorded as plain data, and checkpoints of
the flat layout before the groups still load (``load_from_checkpoint``, export)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from styletrain.export import checkpoint_metadata
from styletrain.module import StyleTransferModule
from styletrain.module_config import (
    FLAT_NAMES,
    LossConfig,
    ScheduleConfig,
    TemporalConfig,
    callable_config,
    upgrade_hparams,
)
from styletrain.temporal.motion import MotionConfig

from .conftest import small_module

# The 30 arguments the module took before the groups, as a checkpoint written by `styletrain fit` stored them (the
# CLI's config of the model, with Lightning's instantiator), with values off their defaults where that shows.
FLAT_HPARAMS = {
    "style": "style.png",
    "style_size": 64,
    "network": "tiny",
    "network_kwargs": None,
    "vgg": "vgg16",
    "vgg_weights": "random",
    "content_layers": ["relu2_2"],
    "style_layers": ["relu1_2"],
    "content_weight": 2.0,
    "style_weight": 3.0,
    "tv_weight": 5.0,
    "style_balance": None,
    "tv_balance": 0.0,
    "perceptual_calibration_steps": 10,
    "temporal_weight": 7.0,
    "temporal_balance": None,
    "temporal_calibration_steps": 50,
    "temporal_balance_against": "content",
    "temporal_feature_weight": 0.5,
    "temporal_luminance": True,
    "motion": {"max_translation": 4.0},
    "motion_seed": 3,
    "lr": 0.02,
    "betas": [0.8, 0.9],
    "weight_decay": 0.01,
    "lr_schedule": "cosine",
    "warmup_steps": 4,
    "channels_last": False,
    "compile": False,
    "export_path": "artifacts/old.safetensors",
    "_instantiator": "pytorch_lightning.cli.instantiate_module",
}


def test_every_flat_name_is_mapped_to_one_field():
    assert set(FLAT_HPARAMS) - set(FLAT_NAMES) == {
        "style", "style_size", "network", "network_kwargs", "vgg", "vgg_weights", "channels_last", "compile",
        "export_path", "_instantiator",
    }  # fmt: skip
    grouped = upgrade_hparams(FLAT_HPARAMS)
    assert grouped["loss"] == {
        "content_layers": ["relu2_2"], "style_layers": ["relu1_2"], "content_weight": 2.0, "style_weight": 3.0,
        "tv_weight": 5.0, "style_balance": None, "tv_balance": 0.0, "calibration_steps": 10,
    }  # fmt: skip
    assert grouped["temporal"]["weight"] == 7.0 and grouped["temporal"]["motion"] == {"max_translation": 4.0}
    assert grouped["optimizer"] == {
        "init_args": {"lr": 0.02, "betas": [0.8, 0.9], "weight_decay": 0.01},
        "class_path": "torch.optim.Adam",
    }
    assert grouped["schedule"] == {"decay": "cosine", "warmup_steps": 4}
    assert "export_path" not in grouped and grouped["network"] == "tiny"  # the artifact's path is --artifact.path
    assert upgrade_hparams(grouped) == grouped  # the grouped layout comes back as it is
    assert upgrade_hparams({"motion": None}) == {}  # no overrides: the motion's defaults


def test_a_module_built_in_python_records_plain_data(style_path: Path):
    module = StyleTransferModule(
        str(style_path),
        network="tiny",
        vgg_weights="random",
        style_size=64,
        loss=LossConfig(style_layers=("relu1_2",), style_weight=3.0),
        temporal=TemporalConfig(weight=1.0, motion=MotionConfig(max_translation=4.0)),
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
        schedule=ScheduleConfig(decay="cosine", warmup_steps=2),
    )
    assert module.loss_weights["style"] == 3.0 and module.temporal_on and module.motion.max_translation == 4.0
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.25  # warm-up step 1 of 2
    hparams = dict(module.hparams)
    assert hparams["optimizer"] == {"class_path": "torch.optim.sgd.SGD", "init_args": {"lr": 0.5}}
    assert hparams["temporal"]["motion"]["max_translation"] == 4.0 and hparams["schedule"]["decay"] == "cosine"
    assert module.hparams_initial["loss"]["style_weight"] == 3.0  # what loggers record is plain too
    path = Path(style_path).parent / "hparams.pt"
    torch.save(hparams, path)
    assert torch.load(path, weights_only=True) == hparams  # export and --ckpt_path read checkpoints this way


def test_optimizer_callables_as_data():
    assert callable_config(torch.optim.Adam) == {"class_path": "torch.optim.adam.Adam"}
    nested = functools.partial(functools.partial(torch.optim.AdamW, lr=0.1), lr=0.2, eps=1e-6)
    assert callable_config(nested) == {"class_path": "torch.optim.adamw.AdamW", "init_args": {"lr": 0.2, "eps": 1e-6}}
    assert "lambda" in callable_config(lambda params: torch.optim.Adam(params))  # recorded by name only


def _old_checkpoint(style_path: Path, path: Path) -> tuple[Path, StyleTransferModule]:
    """A checkpoint the way the flat-layout module wrote it: its weights and its flat hyper-parameters."""
    trained = small_module(style_path, seed=1)
    flat = FLAT_HPARAMS | {"style": str(style_path)}
    checkpoint = {"state_dict": trained.state_dict(), "hyper_parameters": flat, "pytorch-lightning_version": "2.6.6"}
    torch.save(checkpoint, path)
    return path, trained


def test_a_checkpoint_of_the_flat_layout_loads(style_path: Path, tmp_path: Path, content):
    path, trained = _old_checkpoint(style_path, tmp_path / "old.ckpt")
    module = StyleTransferModule.load_from_checkpoint(path)
    assert module.loss_weights == {"content": 2.0, "style": 3.0, "tv": 5.0, "temporal": 7.0, "temporal_feature": 0.5}
    assert list(module.perceptual.style_layers) == ["relu1_2"] and module.temporal_config.luminance
    assert module.motion.max_translation == 4.0 and module.temporal_config.motion_seed == 3
    assert module.schedule_config == ScheduleConfig(decay="cosine", warmup_steps=4)
    group = module.configure_optimizers()["optimizer"].param_groups[0]
    assert (group["initial_lr"], group["betas"], group["weight_decay"]) == (0.02, (0.8, 0.9), 0.01)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(content), trained.eval()(content))  # the checkpoint's weights
    # The checkpoint's own config of the model is kept as it was written; training with pairs is read from it.
    meta = checkpoint_metadata(torch.load(path, weights_only=True))
    assert meta["temporal"] is True and meta["config"]["model"]["lr"] == 0.02


def test_arguments_override_a_flat_checkpoint_and_a_grouped_one_loads(style_path: Path, tmp_path: Path):
    path, _ = _old_checkpoint(style_path, tmp_path / "old.ckpt")
    module = StyleTransferModule.load_from_checkpoint(path, loss={"style_weight": 9.0, "style_layers": ["relu1_2"]})
    assert module.loss_weights["style"] == 9.0 and module.loss_weights["content"] == 1e5  # given group: as given
    new = small_module(style_path, temporal={"balance": 0.5})
    checkpoint = {
        "state_dict": new.state_dict(),
        "hyper_parameters": dict(new.hparams),
        "pytorch-lightning_version": "2.6.6",
    }
    torch.save(checkpoint, tmp_path / "new.ckpt")
    with open(tmp_path / "new.ckpt", "rb") as f:  # a file object works as Lightning's own loader allows
        loaded = StyleTransferModule.load_from_checkpoint(f)
    assert loaded.temporal_balance is not None and loaded.temporal_balance.balance == 0.5


def test_temporal_training_is_on_for_any_weight_or_a_balance():
    assert not TemporalConfig().enabled
    assert all(TemporalConfig(**{name: 0.1}).enabled for name in ("weight", "feature_weight", "balance"))
