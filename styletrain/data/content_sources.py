"""What a source of content images is, and the fixed validation split over sources.

A source is a small indexable collection with a stable text ``key(i)`` per item (used to pick the fixed validation
set) and ``load(i) -> uint8 [H, W, 3]`` that raises :class:`UnreadableImageError` for a bad item, so that the
dataset can skip it and count it. The sources: :mod:`styletrain.data.folders` (``--data.path``),
:mod:`styletrain.data.hf_datasets` (``--data.hf_dataset``) and :mod:`styletrain.data.video_frames`
(``--data.videos``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from inference.core.errors import MediaError


class UnreadableImageError(MediaError):
    """A content image is missing, truncated, corrupt or not an image; datasets skip and count these."""


def load_rgb(source: str | Path | bytes | BinaryIO, min_side: int | None = None) -> np.ndarray:
    """Load a content image as RGB ``uint8 [H, W, 3]`` with the runtime's reader (Pillow's bomb guard kept).

    Args:
        source: A path, the encoded bytes, or a binary file object.
        min_side: If given, JPEGs may be decoded at a reduced scale as long as both sides stay >= ``min_side``
            (a speed-up for training crops; other formats are decoded at full size).

    Raises:
        UnreadableImageError: The source is missing, truncated, corrupt or not an image (one line naming it).
    """
    from inference.io.image_reader import read_image

    try:
        return read_image(source, min_side=min_side)
    except MediaError as exc:
        raise UnreadableImageError(f"cannot read image {exc}") from None


class Source(Protocol):
    """What :class:`styletrain.data.module.StillImageDataset` needs from a source of still images."""

    name: str

    def __len__(self) -> int: ...

    def key(self, index: int) -> str: ...

    def load(self, index: int, min_side: int | None = None) -> np.ndarray: ...


def split_validation(keys: Sequence[str], val_size: int) -> tuple[list[int], list[int]]:
    """Pick a fixed validation set: the ``val_size`` items whose key hashes lowest.

    Hashing the key (a relative path, row number or ``video#frame``) spreads the set over subfolders and sources,
    and it does not change when the data is moved or other files are added (unless they hash lower). At least
    one item is always left for training.

    Returns:
        ``(train_indices, val_indices)``, both sorted, disjoint, covering all items.
    """
    n_val = max(0, min(val_size, len(keys) - 1))
    order = sorted(range(len(keys)), key=lambda i: hashlib.blake2b(keys[i].encode(), digest_size=8).digest())
    val = sorted(order[:n_val])
    chosen = set(val)
    return [i for i in range(len(keys)) if i not in chosen], val
