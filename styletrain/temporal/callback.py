"""Validation-time temporal stability: the warping error on a fixed short clip, and that clip stylized, as a video.

At every validation end, :class:`TemporalValidation` stylizes the same short clip, logs ``val/warping_error``
(Lai et al. 2018, flow estimated once on the INPUT clip, see :mod:`styletrain.temporal.loss`) and
``val/input_warping_error`` (the clip's own error: the floor), and shows the input beside its stylization as an mp4:
a ``wandb.Video`` when the logger is W&B, else a file under ``<log_dir>/temporal_clips/``.

The clip is a user-given video or frame folder (``clip``), or, by default, a camera pan generated from the first
validation image: ``n_frames`` windows moving by ``shift`` whole pixels per frame (not a multiple of the networks'
stride 4, so a net that is not shift-stable shows it). Enable it with ``--trainer.callbacks+=
styletrain.temporal.callback.TemporalValidation`` or ``configs/video.yaml``.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from inference.core.colour import to_float, to_uint8
from styletrain.loggers import is_wandb_logger

log = logging.getLogger(__name__)


def pan_clip(image: np.ndarray, n_frames: int, shift: tuple[int, int]) -> list[np.ndarray]:
    """A camera pan over ``image`` (uint8 ``[H,W,3]``): ``n_frames`` windows moving by ``shift = (dx, dy)`` px/frame.

    The content moves by ``(-dx, -dy)`` per frame, so the true flow is known. Window sides are made even (H.264).
    """
    dx, dy = (abs(int(s)) for s in shift)
    h = image.shape[0] - (n_frames - 1) * dy
    w = image.shape[1] - (n_frames - 1) * dx
    h, w = h - h % 2, w - w % 2
    if h < 16 or w < 16:
        raise ValueError(f"image {image.shape[:2]} too small for a {n_frames}-frame pan by {shift}")
    return [np.ascontiguousarray(image[t * dy : t * dy + h, t * dx : t * dx + w]) for t in range(n_frames)]


def write_mp4(frames: list[np.ndarray], path: Path, fps: int = 8) -> Path:
    """Encode uint8 ``[H,W,3]`` frames as H.264 mp4 (CRF 20) with the runtime's video writer, atomically.

    Odd sides lose their last row or column (yuv420p needs even sizes); the file appears only once complete.
    """
    from inference.core.atomic import atomic_output
    from inference.io.encode_options import EncodeOptions
    from inference.io.media import MediaInfo
    from inference.io.video_writer import VideoSink

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = (side - side % 2 for side in frames[0].shape[:2])
    rate = Fraction(int(fps))
    info = MediaInfo(kind="frames", path=path, width=w, height=h, rate=rate, time_base=1 / rate, n_frames=len(frames))
    with atomic_output(path, suffix=".mp4") as tmp:
        sink = VideoSink(tmp, info, EncodeOptions(crf=20, audio=False), container_ext=".mp4")
        try:
            for pts, array in enumerate(frames):
                sink.write(np.ascontiguousarray(array[:h, :w]), pts)
            sink.close()
        except BaseException:
            sink.abort()
            raise
    return path


class TemporalValidation(Callback):
    """Log the warping error of a fixed clip and the stylized clip at each validation end.

    Args:
        clip: A video or frame folder to use; None generates a pan over the first validation image.
        n_frames: Frames of the clip.
        shift: ``(dx, dy)`` pixels per frame of the generated pan.
        max_side: Longest side of a user-given clip (shrunk to this).
        fps: Frame rate of the logged video.
        flow_method: Flow estimator for the metric (``dis``, ``raft``, ``raft_small``).
        log_video: Also log / save the clip as mp4 (input left, stylized right).
    """

    def __init__(
        self,
        clip: str | None = None,
        *,
        n_frames: int = 8,
        shift: tuple[int, int] = (3, 1),
        max_side: int = 384,
        fps: int = 8,
        flow_method: str = "dis",
        log_video: bool = True,
    ) -> None:
        super().__init__()
        self.clip, self.n_frames, self.shift = clip, int(n_frames), (int(shift[0]), int(shift[1]))
        self.max_side, self.fps, self.flow_method, self.log_video = int(max_side), int(fps), flow_method, log_video
        self._source: np.ndarray | None = None
        self._frames: list[np.ndarray] | None = None
        self._flows: tuple[list[np.ndarray], list[np.ndarray]] | None = None
        self._floor: float | None = None

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._source is None and self.clip is None and isinstance(batch, dict):
            images = batch.get("content", batch.get("frame1"))
            if images is not None:
                img = to_uint8(images[0].detach().float())
                self._source = img.permute(1, 2, 0).cpu().numpy()

    def _prepare(self) -> bool:
        if self._frames is not None:
            return True
        from styletrain.temporal.loss import clip_flows, warping_error

        if self.clip is not None:
            from styletrain.data.video_frames import read_clip

            frames = read_clip(self.clip, max_frames=self.n_frames, max_side=self.max_side)
        elif self._source is not None:
            frames = pan_clip(self._source, self.n_frames, self.shift)
        else:
            return False
        if len(frames) < 2:
            log.warning("temporal validation clip has fewer than 2 frames; warping error skipped")
            return False
        self._frames = frames
        self._flows = clip_flows(frames, method=self.flow_method)
        self._floor = warping_error(frames, *self._flows)
        return True

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._prepare():
            return
        from styletrain.temporal.loss import warping_error

        x = to_float(torch.from_numpy(np.stack(self._frames)).to(pl_module.device).permute(0, 3, 1, 2))
        was_training = pl_module.training
        pl_module.eval()
        out = torch.cat([pl_module(x[i : i + 4]).float().clamp(0, 1) for i in range(0, len(x), 4)])
        pl_module.train(was_training)
        outputs = list(to_uint8(out).permute(0, 2, 3, 1).cpu().numpy())
        error = warping_error(outputs, *self._flows)
        # sync_dist: every rank computes the metric (possibly on its own first image); the mean is logged.
        pl_module.log("val/warping_error", error, sync_dist=True)
        pl_module.log("val/input_warping_error", float(self._floor), sync_dist=True)
        if not self.log_video:
            return
        # Read on every rank: Lightning's log_dir broadcasts from rank 0, so reading it on rank 0 alone (inside the
        # is_global_zero block) would leave rank 0 waiting for the others forever under DDP.
        log_dir = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            frames = [np.concatenate([a, b], axis=1) for a, b in zip(self._frames, outputs, strict=True)]
            self._log_clip(trainer, frames, Path(log_dir))

    def _log_clip(self, trainer: pl.Trainer, frames: list[np.ndarray], log_dir: Path) -> None:
        step = trainer.global_step
        base = log_dir / "temporal_clips"
        path = write_mp4(frames, base / f"step{step:07d}.mp4", fps=self.fps)
        logger = trainer.logger
        if logger is not None and is_wandb_logger(logger):
            logger.log_video("val/clip", [str(path)], step=step, format=["mp4"], caption=["input | stylized"])
