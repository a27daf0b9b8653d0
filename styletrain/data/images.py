"""Loading images for training: the style image and content images, whatever their mode or size.

Every loader returns RGB: grayscale and palette images are expanded, CMYK is converted, transparency is
composited on white (a painting scanned with an alpha channel should not turn black where it is transparent),
16-bit images are scaled to 8 bits (not truncated), and the EXIF orientation is applied so that the pixels
are the way a viewer shows them.

Very large style images (a 20000x20000 scan) are accepted on purpose: Pillow's decompression-bomb guard is lifted
for the one style file the user named, up to :data:`MAX_STYLE_PIXELS`, and the image is reduced with a
high-quality filter (JPEGs are decoded directly at a reduced scale). Content images keep Pillow's guard: a
training image beyond it is reported as unreadable and skipped.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from inference.errors import MediaError, UserError

# A style image above this many pixels is refused rather than decoded (about 4 GB of RGBA at full size).
MAX_STYLE_PIXELS = 1 << 30

_PIL_LIMIT_LOCK = threading.Lock()


class UnreadableImageError(MediaError):
    """A content image is missing, truncated, corrupt or not an image; datasets skip and count these."""


def sha256_of_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (recorded in artifacts to identify the style image)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _open(source: str | Path | bytes | BinaryIO, max_pixels: int | None):
    """``Image.open`` with Pillow's bomb guard replaced by ``max_pixels`` (``None``: keep Pillow's guard)."""
    from PIL import Image

    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    if max_pixels is None:
        return Image.open(fp)
    # Pillow's limit is a module global; swap it under a lock so that concurrent loaders never see ours.
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if img.width * img.height > max_pixels:
        raise UserError(f"image is {img.width}x{img.height}, more than the {max_pixels} pixels accepted")
    return img


def _to_8bit(img):
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


def _flatten(img) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` from an ``L``/``LA``/``RGB``/``RGBA`` image, alpha composited on white."""
    from PIL import Image

    if img.mode in ("LA", "RGBA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy


def _decode(img, max_side: int | None, min_side: int | None):
    """Decode ``img`` (EXIF-rotated, 8-bit mode), shrinking it early when a size bound allows."""
    from PIL import Image, ImageOps

    if min_side is not None and img.format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale when the result still has both sides >= min_side: much faster.
        img.draft("RGB", (min_side, min_side))
    elif max_side is not None and img.format == "JPEG" and max(img.size) > 2 * max_side:
        img.draft("RGB", (2 * max_side, 2 * max_side))
    img = ImageOps.exif_transpose(img)
    img = _to_8bit(img)
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        # Lanczos with reducing_gap: an integer box-reduction first, then a high-quality filter for the rest.
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def load_style_image(path: str | Path, max_side: int | None = 512) -> torch.Tensor:
    """Load the style image.

    Args:
        path: Any image Pillow reads (JPEG, PNG incl. 16-bit and palette, WebP, TIFF, BMP, ...).
        max_side: Downscale (never upscale) so that the longer side is at most this; ``None`` keeps the size.

    Returns:
        ``float32 [1, 3, H, W]`` RGB in [0, 1].

    Raises:
        UserError: One line naming the file when it is missing, unreadable, not an image, or over
            :data:`MAX_STYLE_PIXELS`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"style image not found: {path}")
    if not path.is_file():
        raise UserError(f"style image is not a file: {path}")
    try:
        with _open(path, MAX_STYLE_PIXELS) as img:
            rgb = _flatten(_decode(img, max_side, None))
    except UserError as exc:
        raise UserError(f"cannot use style image {path}: {exc}") from exc
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError (truncated), ValueError, MemoryError...
        raise UserError(f"cannot read style image {path}: {_describe(exc)}") from exc
    # np.array copies: Pillow can hand back a read-only buffer, which torch.from_numpy warns about.
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def load_rgb(source: str | Path | bytes | BinaryIO, min_side: int | None = None) -> np.ndarray:
    """Load a content image as RGB ``uint8 [H, W, 3]``.

    Args:
        source: A path, the encoded bytes, or a binary file object.
        min_side: If given, JPEGs may be decoded at a reduced scale as long as both sides stay >= ``min_side``
            (a speed-up for training crops; other formats are decoded at full size).

    Raises:
        UnreadableImageError: The source is missing, truncated, corrupt or not an image (one line naming it).
    """
    name = str(source) if isinstance(source, str | Path) else "<image bytes>"
    try:
        with _open(source, None) as img:
            return _flatten(_decode(img, None, min_side))
    except Exception as exc:
        raise UnreadableImageError(f"cannot read image {name}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if type(exc).__name__ == "UnidentifiedImageError":
        return "not an image Pillow can identify"
    if type(exc).__name__ == "DecompressionBombError":
        return "too many pixels (Pillow's decompression-bomb limit)"
    return f"{type(exc).__name__}: {exc}"
