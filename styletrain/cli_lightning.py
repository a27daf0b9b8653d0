"""The LightningCLI half of ``styletrain``: ``fit`` and ``validate``, their parser, callbacks and run folders.

Every flag is jsonargparse's own: the module's groups are nested keys (``--model.loss.style_weight 3e10``), the
optimizer a callable (``--model.optimizer.lr 5e-4``), list options take a YAML list or appends
(``--data.video_pairs '[clip.mp4, frames/]'``, ``--data.video_pairs+=clip.mp4``). The one addition is ``--style PATH``,
an argument of the parser that writes ``model.style`` (:class:`StylePaths`), so no command line is rewritten and
DDP's worker processes parse ``sys.argv`` exactly as rank zero did. The library names its fields; this module raises
:class:`~inference.core.errors.OptionError` with them, and :func:`styletrain.cli.main` writes them as flags.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from inference.core.errors import OptionError, UserError
from styletrain.callbacks import ExportArtifact, LastAndBestCheckpoint, StyleSamples, Throughput
from styletrain.cli_noise import quiet_wandb_logger, silence_known_noise
from styletrain.data.module import StyleDataModule
from styletrain.loggers import configure_wandb_mode, is_wandb_logger
from styletrain.module import StyleTransferModule
from styletrain.module_config import upgrade_hparams
from styletrain.runs import resolve_run_config

SUBCOMMAND_DESCRIPTIONS = {
    "fit": "Train a network for one style image. --style PATH (required) sets --model.style PATH; "
    "repeat it (--style a.jpg --style b.jpg) to train one network for several styles. "
    "Each run writes its checkpoints to <default_root_dir>/checkpoints/<style-stem>/<run-id>/; --ckpt_path last "
    "resumes the newest run of the style.",
    "validate": "Compute the validation losses of a checkpoint (--ckpt_path CKPT, or last). --style PATH sets "
    "--model.style PATH.",
}

# Trainer defaults: Johnson et al. 2016 train for 40k iterations at batch 4 (about 2 epochs of COCO's 80k images).
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": 40_000,
    "max_epochs": -1,
    "check_val_every_n_epoch": None,  # validate every val_check_interval *global* steps, across epochs
    "val_check_interval": 1000,
    "log_every_n_steps": 50,
    "precision": "32-true",  # bf16-mixed on GPUs (--trainer.precision bf16-mixed)
    "default_root_dir": "runs",
    "logger": {"class_path": "pytorch_lightning.loggers.WandbLogger", "init_args": {"project": "styletrain"}},
}


class _GivenPaths(list):
    """The ``--style`` paths of this command line so far: a later ``--style`` adds to these, not to a config's."""


class StylePaths(argparse.Action):
    """``--style PATH``: sets ``model.style``; repeated, the paths form a list in order (one multi-style network).

    The first ``--style`` replaces whatever a config file set; the next ones add to it. A single path becomes a
    string again when the config is resolved (:func:`resolve`).
    """

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        given = namespace.get(self.dest)
        namespace[self.dest] = _GivenPaths([*given, values] if isinstance(given, _GivenPaths) else [values])


def resolve(config: Any) -> None:
    """The parsed ``fit``/``validate`` config as it will run, in place: one style as its path (not a list of one),
    and the run's folders and logging (:func:`~styletrain.runs.resolve_run_config`)."""
    model = config.get("model")
    style = model.get("style") if model is not None else None
    if isinstance(style, list) and len(style) == 1:
        model.style = str(style[0])
    resolve_run_config(config)


class StyleSaveConfig(SaveConfigCallback):
    """Save the resolved config in the log folder and, for W&B, inside the run (config.yaml + run config)."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        logger = trainer.logger
        if logger is None or not is_wandb_logger(logger):
            return
        text = self.parser.dump(self.config, skip_unset=False, skip_validation=True)
        logger.experiment.config.update(yaml.safe_load(text), allow_val_change=True)
        (Path(logger.experiment.dir) / self.config_filename).write_text(text)


def _printing_config(parser: Any) -> bool:
    """Whether jsonargparse is printing the config (``print_config`` is set on the root parser only meanwhile)."""
    while parser is not None:
        if hasattr(parser, "print_config"):
            return True
        parser = getattr(parser, "parent_parser", None)
    return False


# A list option given words instead of a list (the form older versions of this CLI took).
_LIST_OPTION = re.compile(r"Parser key \"(?:\w+\.)?((?:model|data)\.\w+(?:\.\w+)*)\".*?(?:list|List|tuple)", re.S)


class StyleArgumentParser(LightningArgumentParser):
    """The CLI's parser: ``--print_config`` prints the config as it will run; a missing style names ``--style``."""

    def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:
        if "skip_none" in kwargs:  # Lightning still passes the name jsonargparse 4.49 renamed to ``skip_unset``
            kwargs["skip_unset"] = kwargs.pop("skip_none")
        if _printing_config(self):
            cfg = cfg.clone()
            sub = cfg.get("subcommand")
            resolve(cfg[sub] if sub else cfg)
        return super().dump(cfg, *args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if "required" in message and re.search(r"(^|[\s.:])model\.style\b", message):
            message = "--style is required: the style image to train for (e.g. --style painting.jpg)"
        elif match := _LIST_OPTION.search(message):
            key = match.group(1)
            message += f"\n(a list: --{key} '[a, b]', or --{key}+=a --{key}+=b)"
        super().error(message, ex)


def _loggers(config: Any) -> list[Any]:
    logger = config.trainer.get("logger")
    return [] if logger in (None, False, True) else logger if isinstance(logger, list) else [logger]


def _check_logger_extras(config: Any) -> None:
    """A logger whose package is missing: one line naming the extra to install, not an import traceback."""
    for logger in _loggers(config):
        if str(getattr(logger, "class_path", "")).endswith("TensorBoardLogger"):
            for package in ("tensorboard", "tensorboardX"):  # Lightning's TensorBoardLogger accepts either
                try:
                    importlib.import_module(package)
                    break
                except ImportError:
                    continue
            else:
                needs = "TensorBoardLogger needs the tensorboard package: pip install 'styletrain[tensorboard]'"
                raise OptionError("trainer.logger", needs)


class StyleTrainCLI(LightningCLI):
    """LightningCLI with ``--style``, the always-on callbacks, a folder per run, input checks and the resolved
    config."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate")}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--style",
            action=StylePaths,
            dest="model.style",
            metavar="PATH",
            help="The style image (sets model.style); repeat it for one network of several styles.",
        )
        parser.add_lightning_class_args(LastAndBestCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/total",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{step}",
            }
        )
        parser.add_lightning_class_args(StyleSamples, "samples")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(ExportArtifact, "artifact")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # The same resolution --print_config shows: one style as its path, run folder, `--ckpt_path last`, logger.
        resolve(self.config[self.config["subcommand"]])

    def _parse_ckpt_path(self) -> None:
        """Lightning's: the checkpoint's hyper-parameters replace the model's config. Here a file Lightning could not
        restore is refused in one line first (it would print a traceback), and hyper-parameters of the flat layout
        (written before the groups) are mapped to the groups (:func:`~styletrain.module_config.upgrade_hparams`)."""
        sub = self.config["subcommand"]
        path = self.config[sub].get("ckpt_path")
        if not path or (not Path(path).is_file() and path in ("last", "best", "hpc", "registry")):
            return
        from styletrain.export import check_training_checkpoint

        try:
            checkpoint = check_training_checkpoint(path, resume=sub == "fit")
        except UserError as exc:
            raise OptionError("ckpt_path", str(exc)) from None
        hparams = upgrade_hparams(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if hparams:
            self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        _check_logger_extras(config)
        style = config.model.get("style")
        for path in [style] if isinstance(style, str) else style or []:
            if not Path(path).is_file():
                raise OptionError("style", f"{path}: file not found")
        if any(str(getattr(lg, "class_path", "")).endswith("WandbLogger") for lg in _loggers(config)):
            configure_wandb_mode()

    def after_instantiate_classes(self) -> None:
        parser = self._parser(self.subcommand)
        text = parser.dump(self.config[self.subcommand], skip_unset=False, skip_validation=True)
        # The resolved config travels in every checkpoint and in the artifact.
        self.model.run_config = yaml.safe_load(text)
        if "LOCAL_RANK" not in os.environ:  # the launching process (rank zero), before DDP workers exist
            # Index the data now: a bad data path fails here, before a logger creates a (W&B) run for nothing.
            # setup() is idempotent, so the Trainer's own call later costs nothing.
            self.datamodule.setup(self.subcommand)
        for logger in self.trainer.loggers:
            if is_wandb_logger(logger):
                quiet_wandb_logger(logger)

    @property
    def artifact_path(self) -> Path | None:
        """The artifact written at the end of ``fit`` (rank zero), else None."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, ExportArtifact):
                return callback.artifact_path
        return None


def run(args: list[str] | None) -> Path | None:
    """Run ``fit`` or ``validate`` (``args`` None: ``sys.argv``); returns the artifact path after ``fit`` (rank zero).

    Raises:
        OptionError: A bad value, naming its field (``style``, ``ckpt_path``, ``temporal.weight``...).
        UserError: Any other problem with the input, in one line.
    """
    silence_known_noise()
    cli = StyleTrainCLI(
        StyleTransferModule,
        StyleDataModule,
        save_config_callback=StyleSaveConfig,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        args=args,
        parser_class=StyleArgumentParser,
        parser_kwargs={name: {"description": text} for name, text in SUBCOMMAND_DESCRIPTIONS.items()}
        | {"prog": "styletrain"},
    )
    return cli.artifact_path if cli.subcommand == "fit" else None
