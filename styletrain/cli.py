"""The ``styletrain`` command: LightningCLI ``fit`` / ``validate``, plus ``export`` and ``evaluate``.

Examples::

    styletrain fit --style painting.jpg --data.path photos/        # paper defaults, W&B (offline without a key)
    styletrain fit --config configs/smoke.yaml                     # seconds on a CPU
    styletrain fit --config configs/default.yaml --style p.jpg --ckpt_path last   # resume
    styletrain export runs/checkpoints/painting/last.ckpt -o painting.onnx
    styletrain evaluate --help

The code defaults are the paper defaults documented in ``configs/default.yaml``, so no ``--config`` is needed.
``--style PATH`` is a shortcut for ``--model.style PATH``. At the end of ``fit`` the artifact's path is printed as the
last line of standard output.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from inference.errors import UserError, exit_on_user_error
from styletrain.callbacks import ExportArtifact, LastAndBestCheckpoint, StyleSamples, Throughput
from styletrain.data.module import StyleDataModule
from styletrain.loggers import configure_wandb_mode, is_wandb_logger
from styletrain.module import StyleTransferModule

DESCRIPTION = """Train a feed-forward style network per style image (Johnson et al. 2016 perceptual losses, optional
temporal loss) and export it as a .safetensors artifact for stylize-video.

commands:
  fit        train (styletrain fit --style painting.jpg --data.path photos/)
  validate   compute the validation losses of a checkpoint
  export     checkpoint -> .safetensors artifact or .onnx (styletrain export CKPT -o OUT.safetensors)
  evaluate   temporal stability / warping error of an artifact on videos (styletrain evaluate --help)
"""

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
        text = self.parser.dump(self.config, skip_none=False, skip_check=True)
        logger.experiment.config.update(yaml.safe_load(text), allow_val_change=True)
        (Path(logger.experiment.dir) / self.config_filename).write_text(text)


class StyleTrainCLI(LightningCLI):
    """LightningCLI with the always-on callbacks, stable checkpoint folders and the resolved config on the module."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate")}

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("description", DESCRIPTION)
        kwargs.setdefault("prog", "styletrain")
        return super().init_parser(**kwargs)

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

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        root = config.trainer.default_root_dir or "."
        # A folder per style that does not depend on the logger's run id, so `--ckpt_path last` finds the
        # previous run's last.ckpt.
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = os.path.join(root, "checkpoints", Path(config.model.style).stem)
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else [config.trainer.logger]
        for logger in loggers:
            init = getattr(logger, "init_args", None)
            # Loggers left at their "." default write under default_root_dir (runs/), like the checkpoints.
            if init is not None and init.get("save_dir") == ".":
                init.save_dir = root
        if any(str(getattr(lg, "class_path", "")).endswith("WandbLogger") for lg in loggers):
            configure_wandb_mode()

    def after_instantiate_classes(self) -> None:
        parser = self._parser(self.subcommand)
        text = parser.dump(self.config[self.subcommand], skip_none=False, skip_check=True)
        # The resolved config travels in every checkpoint and in the artifact.
        self.model.run_config = yaml.safe_load(text)

    @property
    def artifact_path(self) -> Path | None:
        """The artifact written at the end of ``fit`` (rank zero), else None."""
        for callback in getattr(self.trainer, "callbacks", []):
            if isinstance(callback, ExportArtifact):
                return callback.artifact_path
        return None


def _rewrite_style_shortcut(args: list[str]) -> list[str]:
    """``--style X`` / ``--style=X`` -> ``--model.style X``."""
    out: list[str] = []
    for arg in args:
        if arg == "--style":
            out.append("--model.style")
        elif arg.startswith("--style="):
            out.append("--model.style=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
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


def _finish_wandb() -> None:
    """Close an open W&B run so its closing messages come before our last line."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run(args: list[str] | None) -> Path | None:
    """Run the LightningCLI part (``args`` None: ``sys.argv``); returns the artifact path after ``fit`` (rank zero)."""
    # Known, harmless Lightning warnings: the loss network is in eval mode on purpose; `args` comes from main().
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter.*")
    cli = StyleTrainCLI(
        StyleTransferModule,
        StyleDataModule,
        save_config_callback=StyleSaveConfig,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        args=args,
    )
    return cli.artifact_path if cli.subcommand == "fit" else None


@exit_on_user_error
def main(args: list[str] | None = None) -> None:
    """Entry point of ``styletrain``; ``args`` defaults to ``sys.argv[1:]``."""
    from_argv = args is None
    args = list(sys.argv[1:] if args is None else args)
    if args and args[0] == "export":
        from styletrain.export import main as export_main

        export_main(args[1:])
        return
    if args and args[0] == "evaluate":
        from styletrain.evaluate import main as evaluate_main

        evaluate_main(args[1:])
        return
    try:
        if from_argv:
            # Rewrite sys.argv itself: LightningCLI warns when given both, and DDP re-launches sys.argv.
            sys.argv[1:] = _rewrite_style_shortcut(args)
            artifact = run(None)
        else:
            artifact = run(_rewrite_style_shortcut(args))
    except Exception as exc:
        error = _user_error_in_chain(exc)
        if error is None:
            raise
        raise error from None
    _finish_wandb()
    if artifact is not None:
        print(artifact, flush=True)


if __name__ == "__main__":
    main()
