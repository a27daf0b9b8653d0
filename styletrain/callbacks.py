"""Training callbacks: checkpoints, dashboard images, throughput, and the artifact export at the end of ``fit``.

All four are always present in the ``styletrain`` CLI (configured as ``--checkpoint.*``, ``--samples.*``,
``--throughput.*`` and ``--artifact.*``). Images go to W&B as ``wandb.Image`` when the logger is a
``WandbLogger``, and to PNG files under the run's log folder otherwise.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import Tensor

from inference.core.colour import to_uint8
from styletrain.loggers import is_wandb_logger

if TYPE_CHECKING:
    from styletrain.module import StyleTransferModule

log = logging.getLogger(__name__)


def _to_uint8(image: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``uint8 [H, W, 3]``."""
    return to_uint8(image.detach().float()).permute(1, 2, 0).cpu().numpy()


def sample_grid(content: Tensor, stylized: Tensor, pad: int = 2) -> np.ndarray:
    """Two rows, inputs above their stylizations.

    Args:
        content: ``[N, 3, H, W]`` in [0, 1].
        stylized: ``[N, 3, H, W]`` in [0, 1].
        pad: White gap between tiles in pixels.

    Returns:
        ``uint8 [2H + 3 pad, N W + (N + 1) pad, 3]``.
    """
    n, _, h, w = content.shape
    grid = np.full((2 * h + 3 * pad, n * w + (n + 1) * pad, 3), 255, np.uint8)
    for row, images in enumerate((content, stylized)):
        for i in range(n):
            y, x = pad + row * (h + pad), pad + i * (w + pad)
            grid[y : y + h, x : x + w] = _to_uint8(images[i])
    return grid


def _image_dir(trainer: pl.Trainer) -> Path:
    # Not ``trainer.log_dir``: it broadcasts, and these callbacks run on rank zero only (a collective there hangs DDP).
    logger = trainer.logger
    base = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    return Path(base) / "samples"


def _log_image(trainer: pl.Trainer, key: str, image: np.ndarray, caption: str, filename: str) -> None:
    logger = trainer.logger
    if logger is not None and is_wandb_logger(logger):
        logger.log_image(key=key, images=[image], caption=[caption], step=trainer.global_step)
        return
    from PIL import Image

    folder = _image_dir(trainer)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / filename)


def _style_names(pl_module: StyleTransferModule) -> list[str]:
    """The module's style names (several for a multi-style network): the style images' file stems."""
    return list(pl_module.style_names)


class StyleSamples(Callback):
    """Log the style image once and a grid of stylized validation images at each validation (and every N steps).

    A multi-style network gets every style image (``style/<name>``) and one grid per style (``samples/<name>``).

    Args:
        every_n_steps: Also log the grid every this many training steps (0: only at validation).
        num_images: Number of validation images in the grid.
    """

    def __init__(self, every_n_steps: int = 0, num_images: int = 4) -> None:
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self._content: Tensor | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: StyleTransferModule) -> None:
        if not trainer.is_global_zero:
            return
        images, paths = pl_module.style_images, pl_module.style_paths
        if len(images) == 1:
            _log_image(trainer, "style", _to_uint8(images[0][0]), paths[0].name, "style.png")
            return
        for name, image, path in zip(_style_names(pl_module), images, paths, strict=True):
            _log_image(trainer, f"style/{name}", _to_uint8(image[0]), path.name, f"style_{name}.png")

    def _log_grid(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._content is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        names = _style_names(pl_module)
        with torch.no_grad():
            content = self._content.to(pl_module.device)
            stylized = [
                pl_module(content, style=i) if len(names) > 1 else pl_module(content) for i in range(len(names))
            ]
        pl_module.train(was_training)
        step = trainer.global_step
        for name, images in zip(names, stylized, strict=True):
            key, filename = (
                ("samples", f"step_{step:07d}.png")
                if len(names) == 1
                else (f"samples/{name}", f"step_{step:07d}_{name}.png")
            )
            _log_image(trainer, key, sample_grid(self._content, images), f"step {step} {name}", filename)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or not trainer.is_global_zero or trainer.sanity_checking:
            return
        images = batch["frame1"] if "frame1" in batch else batch["content"]
        self._content = images[: self.num_images].detach().float().cpu()
        self._log_grid(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_steps > 0 and trainer.is_global_zero and trainer.global_step % self.every_n_steps == 0:
            self._log_grid(trainer, pl_module)


class Throughput(Callback):
    """Log ``train/images_per_sec`` (all devices together) averaged over a sliding window of steps.

    The interval between consecutive batch ends includes data loading, i.e. what the user waits for. Also logs
    ``data/skipped_images``, the unreadable content images skipped so far, so a damaged dataset shows on the dashboard.

    Args:
        window: Number of steps averaged.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._times: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._times.clear()
        self._times.append((time.perf_counter(), 0))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        images = batch["frame1"] if "frame1" in batch else batch["content"]
        self._times.append((time.perf_counter(), int(images.shape[0]) * trainer.world_size))
        elapsed = self._times[-1][0] - self._times[0][0]
        if elapsed > 0 and len(self._times) > 1:
            count = sum(n for _, n in list(self._times)[1:])
            pl_module.log("train/images_per_sec", count / elapsed, batch_size=int(images.shape[0]))
        skipped = getattr(trainer.datamodule, "skipped_images", None) if trainer.datamodule is not None else None
        if skipped is not None:
            pl_module.log("data/skipped_images", float(skipped), batch_size=int(images.shape[0]))


class LastAndBestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always the latest state, for ``--ckpt_path last``.

    Lightning's ``save_last=True`` only refreshes ``last.ckpt`` when a top-k checkpoint is written, so after a
    validation that does not improve ``val/total`` (or after the final steps) ``last.ckpt`` would be stale and a
    resume would repeat work. Here it is also written after every validation and at the end of training.
    """

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._refresh_last(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._refresh_last(trainer)


def _artifact_name(stem: str) -> str:
    return "style-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "unnamed")


class ExportArtifact(Callback):
    """At the end of ``fit``, write the ``.safetensors`` artifact and log it as a W&B Artifact.

    Exported from the best checkpoint (lowest ``val/total``) when one exists, else from the current weights.

    Args:
        path: Destination; default ``artifacts/<style-stem>.safetensors`` (the stems joined by ``+`` for several
            styles). The one place the artifact's path is set (``--artifact.path``).
        use_best: Prefer the best checkpoint over the final weights.
    """

    def __init__(self, path: str | None = None, use_best: bool = True) -> None:
        self.path = path
        self.use_best = use_best
        self.artifact_path: Path | None = None

    def destination(self, pl_module: StyleTransferModule) -> Path:
        """Where the artifact goes: this callback's ``path``, else the default named after the styles."""
        return Path(self.path) if self.path else Path("artifacts") / f"{'+'.join(_style_names(pl_module))}.safetensors"

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from styletrain.export import export, save_module_artifact

        dest = self.destination(pl_module)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if self.use_best else ""
        if best and Path(best).is_file():
            export(best, dest)
            source = f"best checkpoint {best}"
        else:
            save_module_artifact(pl_module, dest)
            source = "final weights"
        self.artifact_path = dest
        log.info("Artifact written to %s (from %s)", dest, source)
        if trainer.logger is not None and is_wandb_logger(trainer.logger):
            self._log_wandb(trainer, pl_module, dest, source)

    @staticmethod
    def _log_wandb(trainer: pl.Trainer, pl_module: pl.LightningModule, dest: Path, source: str) -> None:
        import wandb

        meta = pl_module.artifact_metadata()
        names = "+".join(_style_names(pl_module))
        artifact = wandb.Artifact(
            name=_artifact_name(names),
            type="model",
            description=f"styletrain {meta['network']} network for style {names} ({source})",
            metadata={k: meta[k] for k in ("network", "network_kwargs", "style_name", "style_sha256", "temporal")}
            | {"styles": meta.get("styles", [])},
        )
        artifact.add_file(str(dest), name=dest.name)
        trainer.logger.experiment.log_artifact(artifact)
