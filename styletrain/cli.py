"""The ``styletrain`` command: LightningCLI ``fit`` / ``validate``, plus ``export`` and ``evaluate``.

Examples::

    styletrain fit --style painting.jpg --data.path photos/        # paper defaults, W&B (offline without a key)
    styletrain fit --config configs/smoke.yaml                     # seconds on a CPU
    styletrain fit --config configs/default.yaml --style p.jpg --ckpt_path last   # resume
    styletrain export runs/checkpoints/painting/20261126-014500/last.ckpt -o painting.onnx
    styletrain evaluate --help

The code defaults are the paper defaults documented in ``configs/default.yaml``, so no ``--config`` is needed.
``--style PATH`` is a shortcut for ``--model.style PATH``; list options (``--data.video_pairs a.mp4 frames/``) take
space-separated values. Each ``fit`` writes its checkpoints to its own folder (:mod:`styletrain.runs`). At the end of
``fit`` the artifact's path is printed as the last line of standard output.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from inference.core.errors import OptionError, UserError, exit_on_user_error
from styletrain.callbacks import ExportArtifact, LastAndBestCheckpoint, StyleSamples, Throughput
from styletrain.data.module import StyleDataModule
from styletrain.loggers import configure_wandb_mode, is_wandb_logger
from styletrain.module import StyleTransferModule
from styletrain.runs import RUN_ID_ENV, resolve_run_config

COMMANDS = {
    "fit": "train a network for one style image (styletrain fit --style painting.jpg --data.path photos/)",
    "validate": "compute the validation losses of a checkpoint (--ckpt_path CKPT)",
    "export": "checkpoint -> .safetensors artifact or .onnx (styletrain export CKPT -o OUT.safetensors)",
    "evaluate": "temporal stability (warping error) and speed of artifacts on videos",
}

HELP = (
    "usage: styletrain {fit,validate,export,evaluate} ...\n\n"
    "Train a feed-forward style network per style image (Johnson et al. 2016 perceptual losses, optional temporal\n"
    "loss) and export it as a .safetensors artifact for stylize-video.\n\ncommands:\n"
    + "".join(f"  {name:<10} {text}\n" for name, text in COMMANDS.items())
    + "\nRun 'styletrain COMMAND --help' for the options of a command.\n"
)

SUBCOMMAND_DESCRIPTIONS = {
    "fit": "Train a network for one style image. --style PATH (required) is a shortcut for --model.style PATH; "
    "repeat it (--style a.jpg --style b.jpg) to train one network for several styles. "
    "Each run writes its checkpoints to <default_root_dir>/checkpoints/<style-stem>/<run-id>/; --ckpt_path last "
    "resumes the newest run of the style.",
    "validate": "Compute the validation losses of a checkpoint (--ckpt_path CKPT, or last). --style PATH is a "
    "shortcut for --model.style PATH.",
}

# Options whose type is a list: on the command line they take space-separated values (--data.video_pairs a.mp4 b/).
LIST_OPTIONS = ("--data.video_pairs", "--data.videos", "--model.content_layers", "--model.style_layers")

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


class StyleArgumentParser(LightningArgumentParser):
    """The CLI's parser: ``--print_config`` prints the config as it will run; a missing style names ``--style``."""

    def dump(self, cfg: Any, *args: Any, **kwargs: Any) -> str:
        if "skip_none" in kwargs:  # Lightning still passes the name jsonargparse 4.49 renamed to ``skip_unset``
            kwargs["skip_unset"] = kwargs.pop("skip_none")
        if _printing_config(self):
            cfg = cfg.clone()
            sub = cfg.get("subcommand")
            resolve_run_config(cfg[sub] if sub else cfg)
        return super().dump(cfg, *args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if "required" in message and re.search(r"(^|[\s.:])model\.style\b", message):
            message = "--style is required: the style image to train for (e.g. --style painting.jpg)"
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
                raise UserError(
                    "--trainer.logger TensorBoardLogger needs the tensorboard package: "
                    "pip install 'styletrain[tensorboard]'"
                )


class StyleTrainCLI(LightningCLI):
    """LightningCLI with the always-on callbacks, a folder per run, input checks and the resolved config."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate")}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
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
        # The same resolution --print_config shows: run folder, `--ckpt_path last`, logger settings.
        resolve_run_config(self.config[self.config["subcommand"]])

    def _parse_ckpt_path(self) -> None:
        # Lightning unpickles --ckpt_path here (weights only) and would print a traceback for a foreign file.
        sub = self.config["subcommand"]
        path = self.config[sub].get("ckpt_path")
        if path and (Path(path).is_file() or path not in ("last", "best", "hpc", "registry")):
            from styletrain.export import check_training_checkpoint

            try:
                check_training_checkpoint(path, resume=sub == "fit")
            except UserError as exc:
                raise UserError(f"--ckpt_path {exc}") from None
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        _check_logger_extras(config)
        style = config.model.get("style")
        for path in [style] if isinstance(style, str) else style or []:
            if not Path(path).is_file():
                raise UserError(f"--style {path}: file not found")
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


def quiet_wandb_logger(logger: Any) -> None:
    """Avoid two W&B warnings that every run printed, by not causing them (call before the run starts).

    Args:
        logger: A Lightning ``WandbLogger`` whose run has not started yet: the deprecated ``anonymous`` setting is
            left out of its ``wandb.init`` arguments, and its save folder is created.
    """
    init = getattr(logger, "_wandb_init", None)
    # Lightning passes anonymous=None, and wandb warns that the setting is deprecated whenever the key is present.
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
    # wandb looks for a git repository from its folder and warns when that folder does not exist yet.
    if logger.save_dir:
        Path(logger.save_dir).mkdir(parents=True, exist_ok=True)


def _rewrite_style_shortcut(args: list[str]) -> list[str]:
    """``--style X`` -> ``--model.style X``; repeated (``--style a.jpg --style b.jpg``) -> one list, in order, where
    the first ``--style`` was (a multi-style network)."""
    values: list[str] = []
    out: list[str] = []
    first = None
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name != "--style":
            out.append(args[i])
        elif eq or i + 1 < len(args):
            values.append(value if eq else args[i + 1])
            i += 0 if eq else 1
            first = len(out) if first is None else first
        else:
            out.append(args[i])  # a trailing --style without a value: the parser reports it
        i += 1
    if first is not None:
        joined = values[0] if len(values) == 1 else json.dumps(values)
        out[first:first] = ["--model.style", joined]
    return out


def _rewrite_args(args: list[str]) -> list[str]:
    """``--style X`` (repeatable, see :func:`_rewrite_style_shortcut`) -> ``--model.style X``;
    ``--data.video_pairs a b`` (any of :data:`LIST_OPTIONS`) -> a list."""
    args = _rewrite_style_shortcut(args)
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in LIST_OPTIONS:
            values = [value] if eq else []
            while not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                i += 1
                values.append(args[i])
            # A YAML list, null or a single value: jsonargparse reads it; several words: one JSON list.
            single = len(values) == 1 and (values[0].startswith("[") or values[0] in ("null", "None"))
            out.append(f"{name}={values[0] if single else json.dumps(values)}" if values else arg)
        else:
            out.append(arg)
        i += 1
    return out


def _user_error_in_chain(exc: BaseException) -> UserError | None:
    """The first :class:`UserError` in ``exc``'s cause/context chain (Lightning and jsonargparse may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def flag_of(field: str) -> str:
    """The command-line flag of a field of the model or data module: ``vgg_weights`` -> ``--model.vgg_weights``,
    ``image_size`` -> ``--data.image_size``; the style images have the ``--style`` shortcut."""
    if field == "style":
        return "--style"
    in_data = field in inspect.signature(StyleDataModule).parameters
    return (
        f"--data.{field}"
        if in_data and field not in inspect.signature(StyleTransferModule).parameters
        else (f"--model.{field}")
    )


def with_flags(error: UserError) -> UserError:
    """``error`` as the command line says it: the library names fields (:class:`OptionError`), the CLI its flags."""
    return UserError(error.with_flags(flag_of)) if isinstance(error, OptionError) else error


def _finish_wandb() -> None:
    """Close an open W&B run so its closing messages come before our last line."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _drop_litlogger_tip(record: logging.LogRecord) -> bool:
    """Logging filter: Lightning advertises its cloud logger at every fit."""
    return "litlogger" not in str(record.msg)


def silence_known_noise() -> None:
    """Hide known, harmless third-party messages that every fit printed; each by its own text, nothing else."""
    # The loss network is in eval mode on purpose; `args` comes from main().
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter.*")
    # Lightning's own deprecated use of torch's pytree API.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    rank_zero_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _drop_litlogger_tip not in rank_zero_log.filters:
        rank_zero_log.addFilter(_drop_litlogger_tip)
    # The two W&B warnings (deprecated `anonymous`, missing git root) are avoided at the source: quiet_wandb_logger.


def run(args: list[str] | None) -> Path | None:
    """Run the LightningCLI part (``args`` None: ``sys.argv``); returns the artifact path after ``fit`` (rank zero)."""
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


def _dispatch_other(args: list[str]) -> bool:
    """Top-level help, ``export``, ``evaluate`` and unknown commands; False for the LightningCLI commands."""
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(HELP)
        raise SystemExit(0 if args else 2)
    if args[0] == "export":
        from styletrain.export import main as export_main

        export_main(args[1:])
        return True
    if args[0] == "evaluate":
        from styletrain.evaluate import main as evaluate_main

        evaluate_main(args[1:])
        return True
    if not args[0].startswith("-") and args[0] not in COMMANDS:
        raise UserError(f"unknown command {args[0]!r}; choose from {', '.join(COMMANDS)} (styletrain --help)")
    return False


@exit_on_user_error
def main(args: list[str] | None = None) -> None:
    """Entry point of ``styletrain``; ``args`` defaults to ``sys.argv[1:]``."""
    from_argv = args is None
    args = list(sys.argv[1:] if args is None else args)
    if _dispatch_other(args):
        return
    owns_run_id = RUN_ID_ENV not in os.environ  # DDP workers inherit the launching process's run id
    try:
        if from_argv:
            # Rewrite sys.argv itself: LightningCLI warns when given both, and DDP re-launches sys.argv.
            sys.argv[1:] = _rewrite_args(args)
            artifact = run(None)
        else:
            artifact = run(_rewrite_args(args))
    except Exception as exc:
        error = _user_error_in_chain(exc)
        if error is None:
            raise
        raise with_flags(error) from None
    finally:
        if owns_run_id:
            os.environ.pop(RUN_ID_ENV, None)
    _finish_wandb()
    if artifact is not None:
        print(artifact, flush=True)


if __name__ == "__main__":
    main()
