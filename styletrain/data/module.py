"""``StyleDataModule``: content images for training (``--data.*`` on the command line).

Sources, any combination of:

* ``--data.path DIR``: a local folder of images, searched recursively (:mod:`styletrain.data.folders`). This is
  the documented route for COCO 2014 train (``python data/prepare_coco.py``, see ``data/README.md``).
* ``--data.hf_dataset NAME``: a Hugging Face ``datasets`` source: ``imagefolder`` with ``--data.hf_data_dir DIR``
  for local files, or a hub dataset name (``--data.hf_config``, ``--data.hf_split``, ``--data.hf_image_column``,
  ``--data.streaming``). Hub downloads happen only in ``prepare_data`` (rank zero); ``setup`` reloads the same
  arguments from the cache (:mod:`styletrain.data.hf_datasets`).
* ``--data.videos FILE ...``: every ``video_frame_stride``-th frame of some videos, as still images
  (:mod:`styletrain.data.video_frames`, decoded by the runtime's readers).

and optionally real consecutive video frames with optical flow (``--data.video_pairs``), drawn at each step with
probability ``--data.video_pair_ratio`` (batches ``{"frame1", "frame2", "flow", "mask"}``, see
:class:`styletrain.data.pairs.VideoPairDataset`). Still batches are ``{"content": float32 [B, 3, S, S] in [0, 1]}``.

The validation set is fixed: the ``val_size`` items whose names hash lowest (for a streaming source: the first
``val_size`` rows), centre-cropped, never used for training. Unreadable images are skipped, counted
(:attr:`StyleDataModule.skipped_images`) and logged; they never stop a run.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from inference.core.errors import OptionError
from styletrain.data.content_sources import Source, UnreadableImageError, split_validation
from styletrain.data.folders import FolderSource
from styletrain.data.hf_datasets import HFSource, decode_hf_value, hf_image_column, hf_load_kwargs, load_hf_dataset
from styletrain.data.stills import (
    ListDataset,
    MixedBatches,
    SkipTracker,
    StillImageDataset,
    StreamingStillDataset,
    crop_to_tensor,
)
from styletrain.data.video_frames import VideoFrameSource

log = logging.getLogger(__name__)


def worker_context(flow_method: str, num_workers: int) -> str | None:
    """The multiprocessing start method of DataLoader workers that estimate flow with ``flow_method``.

    RAFT runs on CUDA when there is a GPU, and a worker forked from a process that has initialised CUDA (the trainer
    has, by the time loaders start) fails with "Cannot re-initialize CUDA in forked subprocess": such workers are
    spawned. DIS runs on the CPU and keeps the platform's default (fork on Linux, cheaper to start).
    """
    return "spawn" if num_workers > 0 and flow_method.startswith("raft") else None


class StyleDataModule(pl.LightningDataModule):
    """Content images (and optionally real video pairs) for style-transfer training.

    Args:
        path: Local folder of training images, searched recursively.
        hf_dataset: Hugging Face dataset: ``"imagefolder"`` (with ``hf_data_dir``) or a hub name.
        hf_data_dir: Folder for ``hf_dataset="imagefolder"`` (or a hub dataset's ``data_dir``).
        hf_config: Hub dataset configuration name, if it has several.
        hf_split: Split to train on.
        hf_image_column: Column holding the images.
        streaming: Stream the Hugging Face dataset instead of downloading it (no local copy; shuffled with a
            buffer; validation = its first ``val_size`` rows). Cannot be combined with ``path`` or ``videos``.
        videos: Video files whose frames are used as still images.
        video_frame_stride: Keep every n-th frame of ``videos``.
        video_pairs: Videos or frame folders for real consecutive-frame pairs with estimated flow.
        video_pair_ratio: Probability, at each training step, of a pair batch instead of a still batch.
        flow_method: Flow estimator for ``video_pairs``: ``"dis"`` (OpenCV, CPU) or ``"raft"``/``"raft_small"``.
        flow_cache_dir: Folder where estimated flow is cached (float16) and reused by later runs.
        image_size: Side of the square training crops (Johnson et al. 2016: 256).
        batch_size: Images per batch (Johnson et al. 2016: 4).
        num_workers: DataLoader worker processes (0: load in the main process).
        val_size: Number of fixed validation images.
        seed: Seed of shuffling, crops and still/pair mixing.
        max_images: Use at most this many still images in total (train + validation), first in sorted order.
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        hf_dataset: str | None = None,
        hf_data_dir: str | None = None,
        hf_config: str | None = None,
        hf_split: str = "train",
        hf_image_column: str = "image",
        streaming: bool = False,
        videos: list[str] | None = None,
        video_frame_stride: int = 10,
        video_pairs: list[str] | None = None,
        video_pair_ratio: float = 0.0,
        flow_method: str = "dis",
        flow_cache_dir: str | None = None,
        image_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 2,
        val_size: int = 8,
        seed: int = 0,
        max_images: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        checks = [
            (image_size >= 16, "image_size", f"must be >= 16, got {image_size}"),
            (batch_size >= 1, "batch_size", f"must be >= 1, got {batch_size}"),
            (num_workers >= 0, "num_workers", f"must be >= 0, got {num_workers}"),
            (val_size >= 0, "val_size", f"must be >= 0, got {val_size}"),
            (0.0 <= video_pair_ratio <= 1.0, "video_pair_ratio", f"must be in [0, 1], got {video_pair_ratio}"),
            (max_images is None or max_images >= 1, "max_images", f"must be >= 1, got {max_images}"),
            (video_pair_ratio == 0 or bool(video_pairs), "video_pair_ratio", "> 0 needs `video_pairs`"),
        ]
        for ok, field, problem in checks:
            if not ok:
                raise OptionError(field, problem, mentions=("video_pairs",))
        if video_pairs and video_pair_ratio == 0:
            log.warning("video_pairs is set but video_pair_ratio is 0: the pairs are not used")
        self.sources: list[Source] = []
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.pair_set: Dataset | None = None
        self.tracker: SkipTracker | None = None
        self._ignored_files = 0

    # ------------------------------------------------------------------------------------------------ state

    def _hf_kwargs(self) -> dict[str, Any]:
        h = self.hparams
        return hf_load_kwargs(h.hf_dataset, h.hf_data_dir, h.hf_config, h.hf_split, h.streaming)

    def prepare_data(self) -> None:
        """Download a hub dataset into the Hugging Face cache (rank zero only; nothing else is downloaded)."""
        if self.hparams.hf_dataset and not self.hparams.streaming:
            load_hf_dataset(self._hf_kwargs())

    def setup(self, stage: str | None = None) -> None:
        """Index the sources and build the datasets (idempotent; the same arguments as ``prepare_data``)."""
        if self.train_set is not None:
            return
        h = self.hparams
        if not (h.path or h.hf_dataset or h.videos):
            raise OptionError(
                "path",
                "is not set: no content images (set `path` DIR, `hf_dataset` NAME or `videos` FILE)",
                mentions=("path", "hf_dataset", "videos"),
            )
        budget = h.max_images
        if h.path:
            folder = FolderSource(h.path, budget)
            self._ignored_files = folder.ignored
            self._add(folder)
            budget = None if budget is None else budget - len(folder)
        if h.hf_dataset and not h.streaming and (budget is None or budget > 0):
            self._add(HFSource(self._hf_kwargs(), h.hf_image_column, budget))
            budget = None if budget is None else budget - len(self.sources[-1])
        if h.videos and (budget is None or budget > 0):
            self._add(VideoFrameSource(h.videos, h.video_frame_stride, h.image_size, budget))
        if h.hf_dataset and h.streaming:
            if self.sources:
                raise OptionError(
                    "streaming", "cannot be combined with `path` or `videos`", mentions=("path", "videos")
                )
            self._setup_streaming()
        else:
            self._setup_indexed()
        if h.video_pairs and h.video_pair_ratio > 0:
            from styletrain.data.pairs import VideoPairDataset  # lazy: OpenCV flow is only needed here

            self.pair_set = VideoPairDataset(
                sources=list(h.video_pairs),
                image_size=h.image_size,
                flow_method=h.flow_method,
                cache_dir=h.flow_cache_dir,
                seed=h.seed,
            )
        log.info("%s", self.describe())

    def _add(self, source: Source) -> None:
        self.sources.append(source)

    def _setup_indexed(self) -> None:
        h = self.hparams
        items = [(s, i) for s, source in enumerate(self.sources) for i in range(len(source))]
        offsets = [sum(len(src) for src in self.sources[:s]) for s in range(len(self.sources))]
        keys = [f"{s}:{self.sources[s].key(i)}" for s, i in items]
        train_idx, val_idx = split_validation(keys, h.val_size)
        if len(val_idx) < h.val_size:
            log.warning("only %d content images: validating on %d of them", len(items), len(val_idx))
        self.tracker = SkipTracker(len(items))
        common = {"image_size": h.image_size, "tracker": self.tracker, "offsets": offsets, "seed": h.seed}
        self.train_set = StillImageDataset(self.sources, [items[i] for i in train_idx], train=True, **common)
        self.val_set = StillImageDataset(self.sources, [items[i] for i in val_idx], train=False, **common)

    def _setup_streaming(self) -> None:

        h = self.hparams
        name = f"Hugging Face dataset {h.hf_dataset} (streaming) [{h.hf_split}]"
        stream = hf_image_column(load_hf_dataset(self._hf_kwargs()), h.hf_image_column, name)
        self.tracker = SkipTracker(0)
        val_items = []
        for row in stream.take(h.val_size):  # the first rows, in the dataset's own order: fixed
            try:
                arr = decode_hf_value(row[h.hf_image_column], h.image_size)
            except UnreadableImageError as exc:
                self.tracker.mark(None)
                log.warning("skipping unreadable image (%s)", exc)
                continue
            val_items.append({"content": crop_to_tensor(arr, h.image_size, False, None)})
        self.val_set = ListDataset(val_items)
        train = stream.skip(h.val_size)
        if h.max_images is not None:
            train = train.take(max(1, h.max_images - h.val_size))
        self._stream, self._stream_name = train, name
        self.train_set = StreamingStillDataset(train, h.hf_image_column, h.image_size, self.tracker, seed=h.seed)

    # ------------------------------------------------------------------------------------------------ loaders

    def _loader(
        self, dataset: Dataset, shuffle: bool, drop_last: bool, distributed: bool = False, flow: bool = False
    ) -> DataLoader:
        """A DataLoader over ``dataset``; ``flow``: its workers estimate optical flow (video pairs)."""
        h = self.hparams
        sampler = None
        if distributed and self.trainer is not None and self.trainer.world_size > 1:
            from torch.utils.data import DistributedSampler

            sampler = DistributedSampler(
                dataset, self.trainer.world_size, self.trainer.global_rank, shuffle, h.seed, drop_last
            )
            shuffle = False
        return DataLoader(
            dataset,
            batch_size=h.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            multiprocessing_context=worker_context(h.flow_method if flow else "dis", h.num_workers),
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(h.seed) if shuffle or h.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader | MixedBatches:
        """Shuffled still batches, or :class:`MixedBatches` of stills and video pairs when a pair ratio is set."""
        self.setup("fit")
        h = self.hparams
        if isinstance(self.train_set, StreamingStillDataset):
            dataset = self.train_set
            if self.trainer is not None and self.trainer.world_size > 1:
                from datasets.distributed import split_dataset_by_node

                shard = split_dataset_by_node(self._stream, self.trainer.global_rank, self.trainer.world_size)
                dataset = StreamingStillDataset(shard, h.hf_image_column, h.image_size, self.tracker, seed=h.seed)
            still: Any = self._loader(dataset, shuffle=False, drop_last=True)
        else:
            drop = len(self.train_set) >= h.batch_size  # type: ignore[arg-type]
            still = self._loader(self.train_set, shuffle=True, drop_last=drop, distributed=self.pair_set is not None)
        if self.pair_set is None:
            return still
        drop = len(self.pair_set) >= h.batch_size  # type: ignore[arg-type]
        pairs = self._loader(self.pair_set, shuffle=True, drop_last=drop, distributed=True, flow=True)
        return MixedBatches(still, pairs, h.video_pair_ratio, seed=h.seed)

    def val_dataloader(self) -> DataLoader:
        """The fixed validation crops, in a fixed order."""
        self.setup("validate")
        return self._loader(self.val_set, shuffle=False, drop_last=False)

    # ------------------------------------------------------------------------------------------------ reporting

    @property
    def skipped_images(self) -> int:
        """Distinct unreadable images met so far (all worker processes; a streaming source counts every skip)."""
        return self.tracker.count if self.tracker is not None else 0

    def describe(self) -> str:
        """A few lines for the log: sources, sizes, loader settings and the skipped-image count."""
        h = self.hparams
        if self.train_set is None:
            return f"StyleDataModule(path={h.path!r}, hf_dataset={h.hf_dataset!r}, videos={h.videos!r}; not set up)"
        n_train = "streaming" if isinstance(self.train_set, StreamingStillDataset) else len(self.train_set)
        lines = [
            f"StyleDataModule: {n_train} training + {len(self.val_set)} fixed validation content images, "  # type: ignore[arg-type]
            f"{h.image_size}px crops, batch {h.batch_size}, {h.num_workers} workers, seed {h.seed}"
        ]
        for source in self.sources:
            extra = f", {self._ignored_files} non-image files ignored" if isinstance(source, FolderSource) else ""
            lines.append(f"  source: {source.name}: {len(source)} images{extra}")
        if isinstance(self.train_set, StreamingStillDataset):
            lines.append(f"  source: {self._stream_name}")
        if self.pair_set is not None:
            lines.append(
                f"  video pairs: {len(self.pair_set)} pairs from {len(h.video_pairs)} source(s), flow {h.flow_method}, "
                f"drawn with probability {h.video_pair_ratio}"
            )
        lines.append(f"  skipped unreadable images: {self.skipped_images}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    __str__ = __repr__  # Lightning's own __str__ would build the dataloaders

    def teardown(self, stage: str) -> None:
        """Log the summary line on unreadable images at the end of a stage."""
        if self.skipped_images:
            log.warning("skipped %d unreadable content image(s) during %s", self.skipped_images, stage)
