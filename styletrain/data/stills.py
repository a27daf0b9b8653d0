"""Torch datasets of content crops, the shared counter of skipped images, and still/pair batch mixing.

Items are ``{"content": float32 [3, S, S] in [0, 1]}``: the image is resized so that its shorter side is ``S``
(``image_size``), then cropped to ``S x S`` (random position and a random horizontal flip for training, centre
crop for validation). An unreadable image is never fatal: it is marked in a :class:`SkipTracker` shared by all
DataLoader workers, logged once, and another image is returned in its place.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from inference.core.colour import to_float
from inference.core.errors import UserError
from styletrain.data.content_sources import Source, UnreadableImageError
from styletrain.data.hf_datasets import decode_hf_value
from styletrain.data.video_frames import resize_shorter

log = logging.getLogger(__name__)

# Give up (with a clear error) only when this many images in a row cannot be read: the data is then broken.
MAX_CONSECUTIVE_FAILURES = 64


class SkipTracker:
    """Counts unreadable images across worker processes (shared memory), each item at most once.

    Args:
        size: Number of indexable items (flags per item); streaming sources use 0 and count every skip.
    """

    def __init__(self, size: int = 0) -> None:
        self._flags = multiprocessing.Array("b", max(size, 1), lock=False) if size else None
        self._count = multiprocessing.Value("q", 0)
        self._local: dict[str, Any] | None = None

    def mark(self, index: int | None) -> bool:
        """Record that item ``index`` (``None``: an unindexed item) is unreadable; True the first time."""
        if self._local is not None:  # a copy made outside process spawning: count locally
            new = index is None or index not in self._local["seen"]
            self._local["seen"].add(index)
            self._local["count"] += int(new)
            return new
        with self._count.get_lock():
            new = index is None or self._flags is None or not self._flags[index]
            if index is not None and self._flags is not None:
                self._flags[index] = 1
            self._count.value += int(new)
        return new

    def is_bad(self, index: int) -> bool:
        if self._local is not None:
            return index in self._local["seen"]
        return self._flags is not None and bool(self._flags[index])

    @property
    def count(self) -> int:
        """Number of distinct unreadable items found so far, in all processes."""
        return self._local["count"] if self._local is not None else int(self._count.value)

    def __getstate__(self) -> dict[str, Any]:
        from multiprocessing.context import get_spawning_popen

        if get_spawning_popen() is not None or self._local is not None:  # handing over to a worker: share
            return self.__dict__.copy()
        # Shared-memory objects may only travel to spawned children; elsewhere (deepcopy, pickling) snapshot.
        seen = {i for i in range(len(self._flags)) if self._flags[i]} if self._flags is not None else set()
        return {"_flags": None, "_count": None, "_local": {"seen": seen, "count": self.count}}


def _worker_generator(owner: Any, seed: int) -> torch.Generator:
    """A generator private to this process: seeded from the DataLoader's per-worker seed, or ``seed`` in-process.

    The DataLoader derives worker seeds from its own seeded generator, so crops are deterministic under a seed
    for a given ``num_workers``, whatever the global RNG state.
    """
    info = get_worker_info()
    key = (os.getpid(), info.id if info is not None else -1)
    if getattr(owner, "_gen_key", None) != key:
        owner._gen = torch.Generator().manual_seed((info.seed if info is not None else seed) % (1 << 63))
        owner._gen_key = key
    return owner._gen


def crop_to_tensor(arr: np.ndarray, size: int, train: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Resize the shorter side to ``size``, crop ``size x size`` (random + flip if ``train``, else centre).

    Args:
        arr: ``uint8 [H, W, 3]``.

    Returns:
        ``float32 [3, size, size]`` in [0, 1].
    """
    arr = resize_shorter(arr, size)  # the runtime's resize policy: area when shrinking, bicubic when enlarging
    new_h, new_w = arr.shape[:2]
    if train:
        top = int(torch.randint(0, new_h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, new_w - size + 1, (1,), generator=generator))
        flip = bool(torch.rand((), generator=generator) < 0.5)
    else:
        top, left, flip = (new_h - size) // 2, (new_w - size) // 2, False
    crop = arr[top : top + size, left : left + size]
    if flip:
        crop = crop[:, ::-1]
    return to_float(torch.from_numpy(np.require(crop, requirements=["C", "W"])).permute(2, 0, 1))


class StillImageDataset(Dataset):
    """Content crops from indexable sources.

    Args:
        sources: The sources (see :mod:`styletrain.data.content_sources`).
        items: ``(source_index, item_index)`` pairs this dataset serves (the train or the validation part).
        image_size: Crop side ``S``.
        train: Random crop and flip (True) or centre crop (False).
        tracker: Shared :class:`SkipTracker`, indexed by position in the global item list ``offsets[s] + i``.
        offsets: Start of each source in the global item list.
        seed: Seed of the augmentation generator when iterated without worker processes.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        items: Sequence[tuple[int, int]],
        *,
        image_size: int,
        train: bool,
        tracker: SkipTracker,
        offsets: Sequence[int],
        seed: int = 0,
    ) -> None:
        self.sources, self.items = list(sources), list(items)
        self.image_size, self.train, self.tracker, self.offsets, self.seed = image_size, train, tracker, offsets, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        for attempt in range(min(MAX_CONSECUTIVE_FAILURES, len(self))):
            # A fixed, well-spread sequence of replacements keeps a run reproducible.
            source, item = self.items[(index + attempt * 7919) % len(self)]
            global_index = self.offsets[source] + item
            if self.tracker.is_bad(global_index):
                continue
            try:
                arr = self.sources[source].load(item, min_side=self.image_size)
            except UnreadableImageError as exc:
                if self.tracker.mark(global_index):
                    log.warning("skipping unreadable image (%s)", exc)
                continue
            return {"content": crop_to_tensor(arr, self.image_size, self.train, _worker_generator(self, self.seed))}
        raise UserError(f"{MAX_CONSECUTIVE_FAILURES} images in a row could not be read; the content data is broken")


class StreamingStillDataset(IterableDataset):
    """Content crops from a streaming Hugging Face dataset (shuffled with a buffer, skips unreadable rows)."""

    def __init__(
        self, dataset: Any, column: str, image_size: int, tracker: SkipTracker, *, seed: int = 0, buffer: int = 1000
    ) -> None:
        self.dataset, self.column, self.image_size = dataset, column, image_size
        self.tracker, self.seed, self.buffer = tracker, seed, buffer

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # The Hugging Face iterable splits its shards over DataLoader workers by itself.
        failures = 0
        for row in self.dataset.shuffle(seed=self.seed, buffer_size=self.buffer):
            try:
                arr = decode_hf_value(row[self.column], self.image_size)
            except UnreadableImageError as exc:
                self.tracker.mark(None)
                log.warning("skipping unreadable image (%s)", exc)
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise UserError(
                        f"{failures} images in a row could not be read; the content data is broken"
                    ) from exc
                continue
            failures = 0
            yield {"content": crop_to_tensor(arr, self.image_size, True, _worker_generator(self, self.seed))}


class ListDataset(Dataset):
    """Ready-made items (the validation crops of a streaming source)."""

    def __init__(self, items: Sequence[dict[str, torch.Tensor]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


class MixedBatches:
    """At each step, a batch of real video pairs with probability ``ratio``, otherwise a batch of stills.

    An epoch has as many steps as the still loader has batches (when it has a length); the pair loader is
    restarted whenever it runs out. The draws come from a generator seeded once, so the sequence of batch kinds
    is the same on every run (and on every DDP rank) with the same seed.

    Args:
        still: Loader of ``{"content"}`` batches.
        pairs: Loader of ``{"frame1", "frame2", "flow", "mask"}`` batches.
        ratio: Probability of a pair batch at each step, in [0, 1].
        seed: Seed of the draws.
    """

    def __init__(self, still: Iterable, pairs: Iterable, ratio: float, seed: int = 0) -> None:
        self.still, self.pairs, self.ratio = still, pairs, ratio
        self._generator = torch.Generator().manual_seed(seed + 7)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.still)  # type: ignore[arg-type]  # TypeError for streaming loaders, as Lightning expects

    def _set_epoch(self) -> None:
        for loader in (self.still, self.pairs):
            # Distributed samplers reshuffle, and VideoPairDataset moves its crops, per epoch.
            for obj in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
                if hasattr(obj, "set_epoch"):
                    obj.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._set_epoch()
        self.epoch += 1
        try:
            steps: int | None = len(self.still)  # type: ignore[arg-type]
        except TypeError:
            steps = None
        iterators: dict[str, Iterator | None] = {"still": iter(self.still), "pairs": None}
        step = 0
        while steps is None or step < steps:
            kind = "pairs" if float(torch.rand((), generator=self._generator)) < self.ratio else "still"
            try:
                batch = next(iterators[kind]) if iterators[kind] is not None else None
            except StopIteration:
                batch = None
            if batch is None:
                if kind == "still" and steps is None and iterators["still"] is not None:
                    return  # a streaming source is exhausted: end of epoch
                iterators[kind] = iter(self.pairs if kind == "pairs" else self.still)
                batch = next(iterators[kind])
            yield batch
            step += 1
