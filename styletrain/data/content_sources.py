"""Where content images come from: a folder, a Hugging Face dataset, or frames sampled from videos.

Each source is a small indexable collection with a stable text ``key(i)`` per item (used to pick the fixed
validation set) and ``load(i) -> uint8 [H, W, 3]`` that raises :class:`UnreadableImageError` for a bad item, so
that the dataset can skip it and count it. Heavy libraries (``datasets``, ``av``) are imported inside the
functions that need them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inference.errors import UserError
from styletrain.data.images import UnreadableImageError, load_rgb

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
OFFLINE_HINT = "offline, use --data.path DIR or --data.hf_dataset imagefolder --data.hf_data_dir DIR"


class Source(Protocol):
    """What :class:`styletrain.data.module.StillImageDataset` needs from a source of still images."""

    name: str

    def __len__(self) -> int: ...

    def key(self, index: int) -> str: ...

    def load(self, index: int, min_side: int | None = None) -> np.ndarray: ...


def list_image_files(root: str | Path) -> tuple[list[Path], int]:
    """All image files under ``root`` (recursive, symlinks followed once), sorted by relative path.

    Returns:
        ``(files, ignored)`` where ``ignored`` counts files without an image extension (and hidden files).

    Raises:
        UserError: ``root`` is missing or not a folder.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"--data.path must be a folder of images, got a file: {root}")
    files: list[Path] = []
    ignored = 0
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                files.append(Path(dirpath) / name)
            else:
                ignored += 1
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files, ignored


class FolderSource:
    """Image files under a folder (``--data.path``)."""

    def __init__(self, root: str | Path, max_images: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.files, self.ignored = list_image_files(self.root)
        if not self.files:
            raise UserError(
                f"no images in {self.root} (looked recursively for {', '.join(IMAGE_EXTENSIONS)}; "
                f"{self.ignored} other files ignored)"
            )
        self.files = self.files[:max_images]
        self.name = f"folder {self.root}"

    def __len__(self) -> int:
        return len(self.files)

    def key(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def load(self, index: int, min_side: int | None = None) -> np.ndarray:
        return load_rgb(self.files[index], min_side=min_side)


def hf_load_kwargs(
    hf_dataset: str, hf_data_dir: str | None, hf_config: str | None, hf_split: str, streaming: bool
) -> dict[str, Any]:
    """Arguments for ``datasets.load_dataset``: identical in ``prepare_data`` and ``setup`` (cache reuse)."""
    kwargs: dict[str, Any] = {"path": hf_dataset, "split": hf_split, "streaming": streaming}
    if hf_config:
        kwargs["name"] = hf_config
    if hf_data_dir:
        kwargs["data_dir"] = str(Path(hf_data_dir).expanduser())
    return kwargs


def load_hf_dataset(kwargs: dict[str, Any]):
    """Call ``datasets.load_dataset(**kwargs)``; any failure becomes one ``UserError`` line with the offline hint."""
    import datasets

    if kwargs["path"] == "imagefolder":
        data_dir = kwargs.get("data_dir")
        if not data_dir:
            raise UserError("--data.hf_dataset imagefolder needs --data.hf_data_dir DIR")
        if not Path(data_dir).is_dir():
            raise UserError(f"--data.hf_data_dir folder not found: {data_dir}")
    try:
        return datasets.load_dataset(**kwargs)
    except Exception as exc:  # ConnectionError, DatasetNotFoundError, FileNotFoundError, ValueError...
        what = f"{kwargs['path']}" + (f" ({kwargs['data_dir']})" if kwargs.get("data_dir") else "")
        detail = " ".join(str(exc).split())[:300]
        raise UserError(
            f"cannot load Hugging Face dataset {what} split {kwargs['split']}: {type(exc).__name__}: {detail}; "
            f"{OFFLINE_HINT}"
        ) from exc


def hf_image_column(dataset, column: str, what: str):
    """Make ``column`` yield undecoded images (bytes/path), so that decoding errors can be skipped and counted."""
    import datasets

    features = dataset.features
    if features is not None and column not in features:
        raise UserError(f"{what} has no column '{column}'; columns: {', '.join(features)} (set --data.hf_image_column)")
    if features is not None and isinstance(features[column], datasets.Image):
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def decode_hf_value(value: Any, min_side: int | None = None) -> np.ndarray:
    """Decode one value of an image column: ``{"bytes", "path"}``, raw bytes, a path, or a PIL image."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return load_rgb(value["bytes"], min_side=min_side)
        if value.get("path"):
            return load_rgb(value["path"], min_side=min_side)
        raise UnreadableImageError("cannot read image: empty image value")
    if isinstance(value, bytes | bytearray):
        return load_rgb(bytes(value), min_side=min_side)
    if isinstance(value, str):
        return load_rgb(value, min_side=min_side)
    if hasattr(value, "save"):  # an already-decoded PIL image
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return load_rgb(buffer.getvalue())
    raise UnreadableImageError(f"cannot read image: unsupported value of type {type(value).__name__}")


class HFSource:
    """A map-style Hugging Face dataset (``imagefolder`` on a local folder, or a downloaded hub dataset)."""

    def __init__(self, kwargs: dict[str, Any], column: str, max_images: int | None = None) -> None:
        what = f"Hugging Face dataset {kwargs['path']}"
        dataset = hf_image_column(load_hf_dataset(kwargs), column, what)
        if max_images is not None and max_images < len(dataset):
            dataset = dataset.select(range(max_images))
        if len(dataset) == 0:
            raise UserError(f"{what} split {kwargs['split']} has no rows")
        self.dataset, self.column = dataset, column
        self.name = what + (f" ({kwargs['data_dir']})" if kwargs.get("data_dir") else "") + f" [{kwargs['split']}]"

    def __len__(self) -> int:
        return len(self.dataset)

    def key(self, index: int) -> str:
        return f"row{index}"

    def load(self, index: int, min_side: int | None = None) -> np.ndarray:
        try:
            value = self.dataset[index][self.column]
        except Exception as exc:  # a broken row in the Arrow data
            raise UnreadableImageError(f"cannot read row {index}: {type(exc).__name__}: {exc}") from exc
        return decode_hf_value(value, min_side)


class VideoFrameSource:
    """Every ``stride``-th frame of some video files, decoded once (PyAV) and kept JPEG-encoded in memory.

    Frames are shrunk so that their shorter side is ``max(image_size, 256)`` before encoding, so a long 1080p
    video costs tens of kilobytes per kept frame, not megabytes.
    """

    def __init__(self, videos: Sequence[str], stride: int, image_size: int, max_images: int | None = None) -> None:
        from PIL import Image

        if stride < 1:
            raise UserError(f"--data.video_frame_stride must be >= 1, got {stride}")
        self.frames: list[bytes] = []
        self.keys: list[str] = []
        side = max(image_size, 256)
        for video in videos:
            if max_images is not None and len(self.frames) >= max_images:
                break
            for index, frame in _sample_frames(Path(video).expanduser(), stride):
                img = Image.fromarray(frame)
                scale = side / min(img.size)
                if scale < 1:
                    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BILINEAR)
                buffer = io.BytesIO()
                img.save(buffer, format="JPEG", quality=95)
                self.frames.append(buffer.getvalue())
                self.keys.append(f"{Path(video).name}#{index}")
                if max_images is not None and len(self.frames) >= max_images:
                    break
        if not self.frames:
            raise UserError(f"no frames decoded from --data.videos {', '.join(map(str, videos))}")
        self.name = f"{len(videos)} video(s), every {stride}th frame"

    def __len__(self) -> int:
        return len(self.frames)

    def key(self, index: int) -> str:
        return self.keys[index]

    def load(self, index: int, min_side: int | None = None) -> np.ndarray:
        return load_rgb(self.frames[index], min_side=min_side)


def _sample_frames(path: Path, stride: int):
    """Yield ``(frame_index, uint8 [H, W, 3])`` for every ``stride``-th decoded frame of ``path``."""
    import av

    if not path.is_file():
        raise UserError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index % stride == 0:
                    yield index, frame.to_ndarray(format="rgb24")
    except UserError:
        raise
    except Exception as exc:  # av.error.InvalidDataError and friends
        raise UserError(f"cannot decode video {path}: {type(exc).__name__}: {exc}") from exc


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
