"""Content images from a Hugging Face ``datasets`` source (``--data.hf_dataset``): ``imagefolder`` on a local folder,
or a hub dataset on machines with internet. ``datasets`` is imported inside the functions that need it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from inference.core.errors import OptionError, UserError
from styletrain.data.content_sources import UnreadableImageError, load_rgb

OFFLINE_HINT = "offline, use `path` DIR or `hf_dataset` imagefolder `hf_data_dir` DIR"
_HINT_FIELDS = ("path", "hf_dataset", "hf_data_dir")


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
            raise OptionError("hf_dataset", "imagefolder needs `hf_data_dir` DIR", mentions=("hf_data_dir",))
        if not Path(data_dir).is_dir():
            raise OptionError("hf_data_dir", f"folder not found: {data_dir}")
    try:
        return datasets.load_dataset(**kwargs)
    except Exception as exc:  # ConnectionError, DatasetNotFoundError, FileNotFoundError, ValueError...
        what = f"{kwargs['path']}" + (f" ({kwargs['data_dir']})" if kwargs.get("data_dir") else "")
        detail = " ".join(str(exc).split())[:300]
        raise OptionError(
            "hf_dataset",
            f"{what}: cannot load the Hugging Face dataset's split {kwargs['split']}: {type(exc).__name__}: "
            f"{detail}; {OFFLINE_HINT}",
            mentions=_HINT_FIELDS,
        ) from exc


def hf_image_column(dataset, column: str, what: str):
    """Make ``column`` yield undecoded images (bytes/path), so that decoding errors can be skipped and counted."""
    import datasets

    features = dataset.features
    if features is not None and column not in features:
        raise OptionError(
            "hf_image_column",
            f"must name a column of {what}: it has no column '{column}'; columns: {', '.join(features)}",
        )
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
