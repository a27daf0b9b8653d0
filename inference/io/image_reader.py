"""Image inputs: one image, a folder of frames (natural sort: frame2 before frame10) or a glob, read with Pillow.

:class:`ImageSequenceSource` yields :class:`~inference.io.media.SourceFrame` objects like the video reader in
:mod:`inference.io.readers`, with pts counting frames at the sequence's frame rate.
"""

from __future__ import annotations

import glob as globlib
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.errors import MediaError
from inference.io.media import DEFAULT_FOLDER_FPS, IMAGE_EXTENSIONS, MediaInfo, Resize, SourceFrame, probe_kind


def natural_key(path: Path) -> list:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frames(pattern: str | Path) -> list[Path]:
    """Image files of a folder or glob, in natural order."""
    p = Path(pattern)
    paths = (
        [q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS]
        if p.is_dir()
        else [Path(q) for q in globlib.glob(str(pattern)) if Path(q).suffix.lower() in IMAGE_EXTENSIONS]
    )
    return sorted((q for q in paths if q.is_file()), key=natural_key)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB, applying its EXIF orientation.

    Raises:
        MediaError: The file is missing or is not an image Pillow can read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale: scale to 8 bits instead of clipping everything above 255 to white.
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                arr = (arr.clip(0, 1) * 255).round().astype(np.uint8)
                return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
            return np.ascontiguousarray(np.asarray(img.convert("RGB")))
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc})") from None


def resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8 [H, W, 3]`` to ``size`` ``(w, h)`` with Pillow (area-averaging when shrinking)."""
    from PIL import Image

    if (array.shape[1], array.shape[0]) == tuple(size):
        return array
    img = Image.fromarray(array)
    shrinking = size[0] < array.shape[1]
    return np.asarray(img.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC))


class ImageSequenceSource:
    """One image or a sequence of image files, played at ``fps``.

    Args:
        path: An image file, a folder or a glob pattern.
        resize: Resizing rules.
        fps: Frame rate given to the sequence (images carry none).
        start: Seconds to skip (``start * fps`` frames).
        duration: Seconds to keep, or ``None``.
    """

    def __init__(
        self,
        path: str | Path,
        resize: Resize | None = None,
        fps: Fraction | None = None,
        start: float | None = None,
        duration: float | None = None,
    ) -> None:
        self.resize = resize or Resize()
        kind = probe_kind(path)
        paths = [Path(path)] if kind == "image" else list_frames(path)
        if not paths:
            raise MediaError(f"{path}: no image files found")
        rate = Fraction(fps) if fps else DEFAULT_FOLDER_FPS
        first = int(round((start or 0.0) * rate))
        last = None if duration is None else first + max(1, int(round(duration * rate)))
        paths = paths[first:last]
        if not paths:
            raise MediaError(f"{path}: no frames left after --start {start}")
        first_image = read_image(paths[0])
        h, w = first_image.shape[:2]
        (tw, th), _ = self.resize.target(w, h)
        self._first = first_image
        self._first_size = (w, h)
        self.info = MediaInfo(
            kind=kind,
            path=Path(path),
            width=tw,
            height=th,
            rate=rate,
            time_base=1 / rate,
            n_frames=len(paths),
            start=float(first / rate),
            frame_paths=paths,
            input_size=(w, h),
        )

    def frames(self) -> Iterator[SourceFrame]:
        """Yield frames in order, every one at the size of the first (a folder of mixed sizes is resized)."""
        size = (self.info.width, self.info.height)
        for i, p in enumerate(self.info.frame_paths):
            arr = self._first if i == 0 else read_image(p)
            if i == 0:
                self._first = None  # Let the first frame be freed once it is on its way.
            if (arr.shape[1], arr.shape[0]) != size:
                _, scaled = self.resize.target(*self._first_size)
                # Frames as large as the first are cropped like it (even sizes); any other size is resized.
                crop = not scaled and (arr.shape[1], arr.shape[0]) == self._first_size
                arr = arr[: size[1], : size[0]] if crop else resize_array(arr, size)
            yield SourceFrame(np.ascontiguousarray(arr), pts=i, index=i)

    def close(self) -> None:
        """Nothing to release."""
