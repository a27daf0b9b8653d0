"""Real video pairs for the temporal loss: consecutive frames of videos or frame folders with estimated flow.

Each source frame is resized so that its shorter side is ``image_size``; flow is estimated on those resized frames
(so it is already in the training resolution's pixels, no rescaling error) in both directions, cached on disk when
``cache_dir`` is set, turned into a visibility mask with :func:`inference.engine.flow.occlusion_mask`, and the same
``image_size`` square window is cropped from both frames, the flow and the mask. Pixels whose flow leaves the crop are
masked too, since the network never sees what lies outside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from inference.core.colour import to_float
from inference.core.errors import MediaError, UserError
from inference.engine.flow import inside_mask, occlusion_mask
from styletrain.data.video_frames import read_clip, resize_shorter
from styletrain.temporal.flow import FLOW_METHODS, FlowCache, forward_backward

log = logging.getLogger(__name__)


def _chw(array: np.ndarray) -> torch.Tensor:
    """``[H, W, C]`` array -> ``[C, H, W]`` tensor of the same dtype (shares memory when the array allows)."""
    return torch.from_numpy(np.require(array, requirements=["C", "W"])).permute(2, 0, 1)


@dataclass
class _Source:
    path: Path
    frames: list[np.ndarray] | None  # decoded video frames (already resized), or None for lazily read folders
    files: list[Path]

    def __len__(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.files)


class VideoPairDataset(Dataset):
    """Consecutive frame pairs with flow and visibility mask from videos and frame folders.

    Args:
        sources: Video files and/or folders of frames.
        image_size: Side of the square crop; frames are first resized so that their shorter side is this.
        flow_method: ``"dis"`` (OpenCV, CPU), ``"raft"`` or ``"raft_small"`` (torchvision weights).
        cache_dir: Folder for the float16 flow cache (strongly recommended: flow is then computed once, ever).
        max_gap: Pairs ``(t, t+g)`` for every gap ``g`` in ``1..max_gap``.
        seed: Seed of the crop positions (deterministic per item and epoch, see :meth:`set_epoch`).
        max_frames_per_source: Keep at most this many frames of each source (videos are decoded into memory).

    Items: dicts ``{"frame1": [3,S,S], "frame2": [3,S,S], "flow": [2,S,S], "mask": [1,S,S]}`` float32, frames in
    [0,1], with ``frame1(x) ≈ frame2(x + flow(x))`` where ``mask == 1``.
    """

    def __init__(
        self,
        sources: list[str],
        image_size: int = 256,
        *,
        flow_method: str = "dis",
        cache_dir: str | None = None,
        max_gap: int = 1,
        seed: int = 0,
        max_frames_per_source: int | None = None,
    ) -> None:
        if flow_method not in FLOW_METHODS:
            raise UserError(f"unknown flow method '{flow_method}'; available: {', '.join(FLOW_METHODS)}")
        if max_gap < 1:
            raise UserError(f"max_gap must be >= 1, got {max_gap}")
        if isinstance(sources, (str, Path)):
            sources = [str(sources)]
        self.image_size = int(image_size)
        self.flow_method = flow_method
        self.cache = FlowCache(cache_dir) if cache_dir else None
        self.seed = int(seed)
        self.epoch = 0
        self.sources = [self._open(Path(s), max_frames_per_source) for s in sources]
        self.index = [
            (si, t, t + g)
            for si, src in enumerate(self.sources)
            for g in range(1, max_gap + 1)
            for t in range(len(src) - g)
        ]
        if not self.index:
            raise UserError(f"no frame pairs in {', '.join(map(str, sources)) or 'an empty source list'}")
        log.info("video pairs: %d pairs from %d sources", len(self.index), len(self.sources))

    def _open(self, path: Path, max_frames: int | None) -> _Source:
        from inference.io.image_reader import list_frames
        from inference.io.media import probe_kind

        kind = probe_kind(path)
        if kind == "frames":
            files = list_frames(path)[:max_frames]
            if len(files) < 2:
                raise MediaError(f"{path}: needs at least 2 frames for video pairs, found {len(files)}")
            return _Source(path, None, files)
        if kind == "image":
            raise MediaError(f"{path}: a single image has no motion; give a video or a folder of frames")
        frames = [resize_shorter(f, self.image_size) for f in read_clip(path, max_frames)]
        return _Source(path, frames, [])

    def set_epoch(self, epoch: int) -> None:
        """Change the crop positions for a new epoch (items stay deterministic given seed, epoch and index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def _frame(self, source: _Source, t: int) -> np.ndarray:
        if source.frames is not None:
            return source.frames[t]
        from inference.io.image_reader import read_image

        return resize_shorter(read_image(source.files[t]), self.image_size)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        si, t1, t2 = self.index[idx]
        source = self.sources[si]
        a, b = self._frame(source, t1), self._frame(source, t2)
        if a.shape != b.shape:
            raise MediaError(f"{source.path}: frames {t1} and {t2} differ in size {a.shape[:2]} vs {b.shape[:2]}")
        fw, bw = forward_backward(a, b, method=self.flow_method, cache=self.cache)
        flow_fw, flow_bw = _chw(fw).float(), _chw(bw).float()
        mask = occlusion_mask(flow_fw[None], flow_bw[None])[0]

        h, w = a.shape[:2]
        s = self.image_size
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = lambda x: x[..., y0 : y0 + s, x0 : x0 + s].contiguous()  # noqa: E731
        flow = crop(flow_fw)
        # Visible in both frames AND landing inside the crop (the loss cannot compare with what it does not see).
        mask = crop(mask) * inside_mask(flow[None])[0]
        return {
            "frame1": crop(to_float(_chw(a))),
            "frame2": crop(to_float(_chw(b))),
            "flow": flow,
            "mask": mask,
        }
