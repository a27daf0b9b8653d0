"""Known third-party noise around a ``styletrain fit``: warnings every run printed, and the W&B run's closing lines.

Each message is silenced by its own text, or avoided at its source, never by a blanket filter.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any


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


def finish_wandb() -> None:
    """Close an open W&B run so its closing messages come before the command's last line (the artifact path)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
