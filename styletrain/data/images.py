"""The style image: loaded once per run at its training resolution, and identified by its sha256.

Decoding is the runtime's (:func:`inference.io.image_reader.read_image`: any mode to RGB, alpha on white, 16-bit
scaled, EXIF orientation applied). What is specific to the style image lives here: very large scans (a 20000x20000
painting) are accepted on purpose, up to :data:`MAX_STYLE_PIXELS` instead of Pillow's decompression-bomb limit,
and reduced with the runtime's resize policy (JPEGs are decoded directly at a reduced scale); styles too small for
the loss network are enlarged to :data:`MIN_STYLE_SIDE`, with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from inference.core.colour import to_float
from inference.core.errors import MediaError, OptionError, UserError

# A style image above this many pixels is refused rather than decoded (about 4 GB of RGBA at full size).
MAX_STYLE_PIXELS = 1 << 30

# Shorter side a style image is enlarged to when smaller: VGG's deepest layers sit behind four 2x poolings (16 px),
# and Gram statistics need several positions there; real paintings are far larger and never touched.
MIN_STYLE_SIDE = 64


def style_paths(style: str | Path | list[str] | tuple[str, ...]) -> list[Path]:
    """The style image paths of the ``style`` field: one path, or a list of them for a multi-style network.

    Raises:
        UserError: An empty list, or two images with the same file stem (the stems name the styles).
    """
    paths = [Path(style)] if isinstance(style, str | Path) else [Path(s) for s in style]
    if not paths:
        raise OptionError("style", "is empty: give at least one style image")
    stems = [p.stem for p in paths]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise OptionError(
            "style", f"is invalid: two style images are named {repeated[0]!r}; styles are named by file stem"
        )
    return paths


def styles_stem(style: str | Path | list[str] | tuple[str, ...]) -> str:
    """The name of a run's style(s) in folder and file names: the file stem, or the stems joined by ``+``."""
    return "+".join(p.stem for p in style_paths(style))


def load_style_image(path: str | Path, max_side: int | None = 512) -> torch.Tensor:
    """Load the style image.

    Args:
        path: Any image Pillow reads (JPEG, PNG incl. 16-bit and palette, WebP, TIFF, BMP, ...).
        max_side: Downscale (never upscale) so that the longer side is at most this; ``None`` keeps the size.

    Returns:
        ``float32 [1, 3, H, W]`` RGB in [0, 1], with ``min(H, W) >= MIN_STYLE_SIDE``.

    Raises:
        UserError: One line naming the file when it is missing, unreadable, not an image, or over
            :data:`MAX_STYLE_PIXELS`.
    """
    from inference.io.image_reader import read_image

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"style image not found: {path}")
    if not path.is_file():
        raise UserError(f"style image is not a file: {path}")
    try:
        rgb = read_image(path, max_side=max_side, max_pixels=MAX_STYLE_PIXELS)
    except MediaError as exc:
        raise UserError(f"cannot read style image {exc}") from None
    rgb = _enlarge_if_tiny(rgb, path)
    return to_float(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0))


def _enlarge_if_tiny(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Enlarge ``uint8 [H, W, 3]`` so that its shorter side is :data:`MIN_STYLE_SIDE` (aspect kept), warning once."""
    from inference.io.image_reader import resize_array

    h, w = rgb.shape[:2]
    if min(h, w) >= MIN_STYLE_SIDE:
        return rgb
    scale = MIN_STYLE_SIDE / min(h, w)
    size = (max(MIN_STYLE_SIDE, round(w * scale)), max(MIN_STYLE_SIDE, round(h * scale)))
    warnings.warn(
        f"style image {path} is only {w}x{h}; enlarged to {size[0]}x{size[1]} for the loss network "
        "(use a larger image for a meaningful style)",
        UserWarning,
        stacklevel=3,
    )
    return np.ascontiguousarray(resize_array(rgb, size))
