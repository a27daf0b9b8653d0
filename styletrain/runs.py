"""Where a run writes and what it logs, decided once on the parsed config (and shown as such by ``--print_config``).

* Each ``fit`` gets its own checkpoint folder, ``<default_root_dir>/checkpoints/<style-stem>/<run-id>/``, so a second
  run of a style never writes ``last-v1.ckpt`` beside the first run's files, and per-frame and temporal runs of one
  style stay apart. The run id is the start time, ``YYYYmmdd-HHMMSS`` (``-2``, ``-3``, ... when taken).
* ``--ckpt_path last`` resumes the newest run of the style (the most recently written ``last.ckpt`` under
  ``checkpoints/<style-stem>/``) and keeps writing into that run's folder.
* W&B loggers left at ``save_dir: .`` write under ``default_root_dir``, and ``offline`` is set when no API key is
  configured (see :mod:`styletrain.loggers`), so the printed config is what runs.
* A run shorter than ``log_every_n_steps`` would log no ``train/*`` metric at all: the interval is shortened to a
  tenth of ``max_steps`` (at least 1).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from styletrain.data.images import styles_stem
from styletrain.loggers import configure_wandb_mode

log = logging.getLogger(__name__)

RUN_ID_ENV = "STYLETRAIN_RUN_ID"
"""Environment variable carrying the run id to DDP worker processes (they re-run the command line)."""


def checkpoint_root(default_root_dir: str | None, style: str | list[str]) -> Path:
    """``<default_root_dir>/checkpoints/<style-stem>``: the folder holding one sub-folder per run of a style (the
    stems joined by ``+`` for several styles)."""
    return Path(default_root_dir or ".") / "checkpoints" / styles_stem(style)


def new_run_id(parent: Path, now: float | None = None) -> str:
    """A run id from the local time, unique among ``parent``'s entries (``20261126-014500``, then ``...-2``)."""
    base = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    run_id, n = base, 1
    while (parent / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def run_id_for(parent: Path) -> str:
    """This process's run id: inherited from :data:`RUN_ID_ENV` (DDP workers), else a new one, exported for them."""
    run_id = os.environ.get(RUN_ID_ENV) or new_run_id(parent)
    os.environ[RUN_ID_ENV] = run_id
    return run_id


def newest_last_checkpoint(parent: Path) -> Path | None:
    """The most recently written ``last.ckpt`` of a style: in a run folder, or directly in ``parent`` (old layout)."""
    candidates = [p for p in (*parent.glob("*/last.ckpt"), parent / "last.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _resolve_loggers(trainer: Any, root: str) -> None:
    for logger in _as_list(trainer.get("logger")):
        init = getattr(logger, "init_args", None)
        if init is None:
            continue
        # Loggers left at their "." default write under default_root_dir (runs/), like the checkpoints.
        if init.get("save_dir") == ".":
            init.save_dir = root
        if str(getattr(logger, "class_path", "")).endswith("WandbLogger") and not init.get("offline"):
            # Decided from a copy of the environment: printing the config must not change it.
            init.offline = configure_wandb_mode(dict(os.environ)) == "offline"


def _resolve_log_interval(trainer: Any) -> None:
    max_steps, every = trainer.get("max_steps") or -1, trainer.get("log_every_n_steps")
    if every is not None and 0 < max_steps < every:
        trainer.log_every_n_steps = max(1, max_steps // 10)


def _resolve_checkpoints(config: Any, root: str, run_id: str | None) -> None:
    style = config.get("model", {}).get("style")
    if not style or config.get("checkpoint") is None or config.checkpoint.get("dirpath") is not None:
        return
    parent = checkpoint_root(root, style if isinstance(style, list) else str(style))
    if config.get("ckpt_path") == "last":
        last = newest_last_checkpoint(parent)
        if last is None:
            log.warning("--ckpt_path last: no last.ckpt under %s, starting a new run", parent)
            config.ckpt_path = None
        else:
            config.ckpt_path = str(last)
            config.checkpoint.dirpath = str(last.parent)  # keep writing into the resumed run's folder
            return
    config.checkpoint.dirpath = str(parent / (run_id or run_id_for(parent)))


def resolve_run_config(config: Any, run_id: str | None = None) -> None:
    """Fill in the run's folders and logging settings on a parsed ``fit``/``validate`` config, in place.

    Args:
        config: The subcommand's namespace (``trainer``, ``model``, ``checkpoint``, ``ckpt_path``, ...).
        run_id: Name of this run's checkpoint folder; default from :func:`run_id_for`.
    """
    trainer = config.get("trainer")
    if trainer is None:
        return
    root = trainer.get("default_root_dir") or "."
    _resolve_loggers(trainer, root)
    _resolve_log_interval(trainer)
    _resolve_checkpoints(config, root, run_id)
