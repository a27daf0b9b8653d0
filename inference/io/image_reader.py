"""Image inputs, read with Pillow: the one still-image decoder (runtime and training), the resize policy, and
frame sequences (one image, a folder of frames in natural order: frame2 before frame10, or a glob).

:func:`read_image` turns any image Pillow reads into RGB ``uint8 [H, W, 3]`` the way a viewer shows it: grayscale
and palette images are expanded, CMYK and other modes converted, transparency composited on white (a painting
scanned with an alpha channel should not turn black where it is transparent), 16-bit and float images scaled to 8
bits (not truncated), and the EXIF orientation applied. Pillow's decompression-bomb guard stays on unless the
caller gives its own pixel limit; an image over the limit is a one-line :class:`MediaError` naming the file.

:class:`ImageSequenceSource` yields :class:`~inference.io.media.SourceFrame` objects like the video reader in
:mod:`inference.io.video_reader`, with pts counting frames at the sequence's frame rate.
"""

from __future__ import annotations

import glob as globlib
import io
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from inference.core.errors import MediaError, UserError, one_line
from inference.core.stages import StageClock
from inference.io.media import DEFAULT_FOLDER_FPS, IMAGE_EXTENSIONS, MediaInfo, Resize, SourceFrame, probe_kind
from inference.io.protocols import Source

if TYPE_CHECKING:
    from PIL import Image as PILImage

ImageInput = str | Path | bytes | BinaryIO

# Guards the swap of Pillow's module-global pixel limit (see _open).
_PIL_LIMIT_LOCK = threading.Lock()


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


def read_image(
    source: ImageInput,
    *,
    min_side: int | None = None,
    max_side: int | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
    check_size: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Read an image as RGB ``uint8 [H, W, 3]`` (C-contiguous, writable), upright and alpha on white.

    Args:
        source: A path, the encoded bytes, or a binary file object.
        min_side: JPEGs may be decoded at a reduced scale (1/2, 1/4, 1/8) as long as both sides stay >= this.
        max_side: Shrink (never enlarge) so that the longer side is at most this, with :func:`resize_image`.
        max_pixels: Accept images up to this many pixels instead of Pillow's decompression-bomb limit.
        name: How messages name the image (default: the path, or ``<image bytes>``).
        check_size: Called with the header's ``(width, height)`` before anything is decoded (an upload's pixel
            budget: a small, well-compressed file can hold a huge picture); the :class:`UserError` it raises passes
            through unchanged.

    Raises:
        MediaError: One line naming the file: missing, not an image, truncated or corrupt, or over the pixel limit.
    """
    name = name or (str(source) if isinstance(source, str | Path) else "<image bytes>")
    from PIL import Image, UnidentifiedImageError

    try:
        with _open(source, max_pixels) as img:
            if check_size is not None:
                check_size(img.width, img.height)
            return _flatten(_decode(img, min_side, max_side))
    except FileNotFoundError:
        raise MediaError(f"{name}: no such file") from None
    except Image.DecompressionBombError as exc:
        raise MediaError(f"{name}: refused by Pillow's decompression-bomb guard ({exc})") from None
    except UnidentifiedImageError:
        raise MediaError(f"{name}: not an image Pillow can identify") from None
    except MediaError as exc:
        raise MediaError(f"{name}: {exc}") from None
    except UserError:
        raise  # check_size's, already naming the image
    except Exception as exc:
        # Truncated or corrupt data: Pillow's decoders raise OSError and ValueError, but also SyntaxError (a PNG cut
        # mid-IDAT), EOFError, struct.error and others on bytes nobody vetted (an upload).
        raise MediaError(f"{name}: not a readable image ({type(exc).__name__}: {one_line(exc, 160)})") from None


def _open(source: ImageInput, max_pixels: int | None) -> PILImage.Image:
    """``Image.open`` with Pillow's bomb guard, or with ``max_pixels`` instead of it when given."""
    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    if max_pixels is None:
        return Image.open(fp)
    # Pillow's limit is a module global: swap it under a lock so that concurrent readers never see ours.
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if img.width * img.height > max_pixels:
        img.close()
        raise MediaError(f"image is {img.width}x{img.height}, more than the {max_pixels} pixels accepted")
    return img


def _decode(img: PILImage.Image, min_side: int | None, max_side: int | None) -> PILImage.Image:
    """Decode ``img`` upright in an 8-bit mode, shrinking JPEGs early (DCT scaling) when a size bound allows."""
    from PIL import ImageOps

    if min_side is not None and img.format == "JPEG":
        img.draft("RGB", (min_side, min_side))  # both sides stay >= min_side
    elif max_side is not None and img.format == "JPEG" and max(img.size) > 2 * max_side:
        img.draft("RGB", (2 * max_side, 2 * max_side))
    img = _to_8bit(ImageOps.exif_transpose(img))
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = resize_image(img, (max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    return img


def _to_8bit(img: PILImage.Image) -> PILImage.Image:
    """Bring high-bit-depth and exotic modes to one of ``L``, ``LA``, ``RGB``, ``RGBA``."""
    from PIL import Image

    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif img.mode == "F":
            scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
        else:  # 32-bit integer: 16-bit PNGs decode to "I" in some Pillow versions
            scale = 255.0 / 65535.0 if arr.size and arr.max() > 255 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("P", "PA"):
        return img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    if img.mode in ("La", "RGBa"):
        return img.convert("RGBA")
    return img.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV, ...


def _flatten(img: PILImage.Image) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` from an ``L``/``LA``/``RGB``/``RGBA`` image, alpha composited on white."""
    from PIL import Image

    if img.mode in ("LA", "RGBA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy


def resize_image(img: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """Resize a Pillow image to ``size`` ``(w, h)`` with THE resize policy, used by training and inference alike.

    * Shrinking (neither side grows) averages the input area each output pixel covers (Pillow's ``BOX``, the same
      filter as FFmpeg's ``area`` that :mod:`inference.io.video_reader` asks swscale for): no aliasing and no
      ringing, so fine textures neither shimmer nor halo, and an image and a video frame of the same picture come
      out alike. Training crops, style images and inference inputs therefore share their low-pass behaviour.
    * Enlarging (either side grows) uses bicubic: smoother than bilinear's visible diamonds, sharper than area
      (which degenerates to nearest-neighbour when enlarging); its slight overshoot is clipped to [0, 255].
    """
    from PIL import Image

    if img.size == tuple(size):
        return img
    shrinking = size[0] <= img.width and size[1] <= img.height
    return img.resize(tuple(size), Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)


def resize_array(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8 [H, W, 3]`` to ``size`` ``(w, h)`` with the policy of :func:`resize_image`."""
    from PIL import Image

    if (array.shape[1], array.shape[0]) == tuple(size):
        return array
    return np.array(resize_image(Image.fromarray(array), size))  # a writable copy


class ImageSequenceSource(Source):
    """One image or a sequence of image files, played at ``fps``.

    Args:
        path: An image file, a folder or a glob pattern.
        resize: Resizing rules.
        fps: Frame rate given to the sequence (images carry none), checked by :class:`~inference.io.trim.TrimOptions`.
        start: Seconds to skip (``start * fps`` frames).
        duration: Seconds to keep, or ``None``.
    """

    def __init__(
        self,
        path: str | Path,
        resize: Resize | None = None,
        fps: Fraction | float | None = None,
        start: float | None = None,
        duration: float | None = None,
    ) -> None:
        self.resize = resize or Resize()
        self.planes, self.decoder = False, None  # Always RGB, decoded by PIL.
        kind = probe_kind(path)
        paths = [Path(path)] if kind == "image" else list_frames(path)
        if not paths:
            raise MediaError(f"{path}: no image files found")
        # A float such as 29.97 is a fraction over 2^48: muxers need a time base in 32 bits (NTSC: 30000/1001).
        rate = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FOLDER_FPS
        first = int(round((start or 0.0) * rate))
        last = None if duration is None else first + max(1, int(round(duration * rate)))
        paths = paths[first:last]
        if not paths:
            raise MediaError(f"{path}: no frames left after `start` {start}", mentions=("start",))
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

    def frames(self, clock: StageClock | None = None) -> Iterator[SourceFrame]:
        """Yield frames in order, every one at the size of the first (a folder of mixed sizes is resized); ``clock``
        counts reading, decoding and resizing as ``decode`` busy time."""
        return (clock or StageClock()).timed(self._frames(), "decode")

    def _frames(self) -> Iterator[SourceFrame]:
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

    def truncation_warning(self) -> str | None:
        """``None``: an unreadable image fails with an error instead of ending the sequence early."""
        return None

    def close(self) -> None:
        """Nothing to release."""
