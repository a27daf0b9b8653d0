"""The ``styletrain`` command: LightningCLI ``fit`` / ``validate``, plus ``export`` and ``evaluate``.

Examples::

    styletrain fit --style painting.jpg --data.path photos/        # paper defaults, W&B (offline without a key)
    styletrain fit --config configs/smoke.yaml                     # seconds on a CPU
    styletrain fit --config configs/default.yaml --style p.jpg --ckpt_path last   # resume
    styletrain export runs/checkpoints/painting/20261126-014500/last.ckpt -o painting.onnx
    styletrain evaluate --help

The code defaults are the paper defaults documented in ``configs/default.yaml``, so no ``--config`` is needed.
``--style PATH`` sets ``--model.style PATH`` (repeat it for several styles); list options take a YAML list
(``--data.video_pairs '[a.mp4, frames/]'``) or appends (``--data.video_pairs+=a.mp4``). Each ``fit`` writes its
checkpoints to its own folder (:mod:`styletrain.runs`). At the end of ``fit`` the artifact's path is printed as the
last line of standard output.

This module dispatches the commands and writes errors as flags; the LightningCLI part is
:mod:`styletrain.cli_lightning`, the third-party noise :mod:`styletrain.cli_noise`.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

from inference.core.errors import OptionError, UserError, exit_on_user_error
from styletrain.cli_noise import finish_wandb
from styletrain.module_config import FLAT_NAMES
from styletrain.runs import RUN_ID_ENV

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

# The sections of a fit/validate config, whose fields a library names by their dotted key (``trainer.logger``), and
# the keys outside any section.
_SECTIONS = ("trainer", "model", "data", "checkpoint", "samples", "throughput", "artifact")
_TOP_LEVEL = ("ckpt_path", "seed_everything")


def flag_of(field: str) -> str:
    """The command-line flag of a field named by the library.

    ``vgg_weights`` -> ``--model.vgg_weights``, ``image_size`` -> ``--data.image_size``, a field of one of the
    module's groups by its dotted name (``temporal.balance`` -> ``--model.temporal.balance``) or by its flat name
    (``style_weight`` -> ``--model.loss.style_weight``, :data:`~styletrain.module_config.FLAT_NAMES`), a section's
    key as it is (``trainer.logger``, ``ckpt_path``); the style images have ``--style``.
    """
    from styletrain.data.module import StyleDataModule
    from styletrain.module import StyleTransferModule

    if field == "style":
        return "--style"
    if field in _TOP_LEVEL or field.split(".")[0] in _SECTIONS:
        return f"--{field}"
    grouped = FLAT_NAMES.get(field, field).replace(".init_args.", ".")
    if "." in grouped:
        return f"--model.{grouped}"
    in_data = field in inspect.signature(StyleDataModule).parameters
    in_model = field in inspect.signature(StyleTransferModule).parameters
    return f"--data.{field}" if in_data and not in_model else f"--model.{field}"


def with_flags(error: UserError) -> UserError:
    """``error`` as the command line says it: the library names fields (:class:`OptionError`), the CLI its flags."""
    return UserError(error.with_flags(flag_of)) if isinstance(error, OptionError) else error


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


def _fit_or_validate(args: list[str] | None) -> Path | None:
    """:func:`styletrain.cli_lightning.run`, its errors written with flags; the run id is this command's only."""
    from styletrain.cli_lightning import run

    owns_run_id = RUN_ID_ENV not in os.environ  # DDP workers inherit the launching process's run id
    try:
        return run(args)
    except Exception as exc:
        error = _user_error_in_chain(exc)
        if error is None:
            raise
        raise with_flags(error) from None
    finally:
        if owns_run_id:
            os.environ.pop(RUN_ID_ENV, None)


@exit_on_user_error
def main(args: list[str] | None = None) -> None:
    """Entry point of ``styletrain``; ``args`` defaults to ``sys.argv[1:]``.

    The command line is parsed as given, never rewritten: with ``args`` None LightningCLI reads ``sys.argv``, which
    DDP's launcher runs again in each worker process.
    """
    if _dispatch_other(list(sys.argv[1:] if args is None else args)):
        return
    artifact = _fit_or_validate(None if args is None else list(args))
    finish_wandb()
    if artifact is not None:
        print(artifact, flush=True)


if __name__ == "__main__":
    main()
