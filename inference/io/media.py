"""Shared description of media inputs: frames with timestamps, stream facts for writers, resize rules, input kinds.

Used by the readers (:mod:`inference.io.video_reader` for videos, :mod:`inference.io.image_reader` for images,
folders and globs) and by the writers (:mod:`inference.io.writers`, :mod:`inference.io.video_writer`,
:mod:`inference.io.gif_writer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.core.errors import MediaError
from inference.io.colour_tags import ColourTags
from inference.io.limits import check_frame_size

if TYPE_CHECKING:
    from inference.core.colour import YuvSpec

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_FOLDER_FPS = Fraction(25)


@dataclass
class SourceFrame:
    """One decoded frame.

    Attributes:
        array: ``uint8 [H, W, 3]`` RGB, C-contiguous, in coded (not display-rotated) orientation; or, from a video
            source opened with ``planes=True`` (see :attr:`MediaInfo.yuv`), ``uint8 [H * 3 / 2, W]`` I420 planes.
        pts: Presentation timestamp in :attr:`MediaInfo.time_base` units, relative to the trimmed start.
        index: 0-based position in the output sequence.
    """

    array: np.ndarray
    pts: int
    index: int


@dataclass
class MediaInfo:
    """What writers need to know about a source.

    Attributes:
        kind: ``"video"``, ``"image"`` or ``"frames"`` (folder or glob).
        path: The input path (or glob pattern).
        width: Width of the frames the source yields (after resizing), in pixels.
        height: Height of the frames the source yields, in pixels.
        rotation: Display rotation in degrees counter-clockwise (0, 90, 180, 270) to apply when showing the frames.
        rate: Nominal (average) frame rate.
        time_base: Unit of :attr:`SourceFrame.pts` in seconds.
        n_frames: Expected number of frames after trimming, or ``None`` when unknown.
        start: Trim start in seconds as the user gave it (0 when not trimming).
        origin: Absolute input time in seconds that becomes output time 0 (0 when not trimming, so that timestamps
            are kept exactly); audio is shifted by the same amount.
        end: Absolute input time in seconds where output stops, or ``None`` for the end of the input.
        frame_paths: For frame folders, the files in order.
        has_audio: Whether the input has audio streams.
        input_size: ``(width, height)`` of the input frames before resizing or cropping.
        colour: The input's colour tags (untagged for images: they are RGB).
        yuv: How to decode the frames when they are I420 planes; ``None`` when they are RGB.
    """

    kind: str
    path: Path
    width: int
    height: int
    rotation: int = 0
    rate: Fraction = DEFAULT_FOLDER_FPS
    time_base: Fraction = Fraction(1, 25)
    n_frames: int | None = None
    start: float = 0.0
    origin: float = 0.0
    end: float | None = None
    frame_paths: list[Path] = field(default_factory=list)
    has_audio: bool = False
    input_size: tuple[int, int] = (0, 0)
    colour: ColourTags = ColourTags()
    yuv: YuvSpec | None = None


@dataclass
class Resize:
    """How a source resizes frames: an explicit display size, a cap on the long side, and/or even dimensions.

    Attributes:
        size: ``(width, height)`` in display orientation, or ``None``.
        max_side: Longest side cap in pixels (only ever shrinks), or ``None``.
        even: Make both dimensions even (yuv420p video needs it): resized frames are rounded to even sizes,
            frames that are not otherwise resized lose their last odd row/column (a crop, never a stretch), except
            that a side of 1 pixel is scaled up to 2.
    """

    size: tuple[int, int] | None = None
    max_side: int | None = None
    even: bool = False

    def target(self, width: int, height: int, rotation: int = 0) -> tuple[tuple[int, int], bool]:
        """Return ``((w, h), scaled)``: the coded size of output frames and whether a rescale (not a crop) is needed."""
        w, h = width, height
        scaled = False
        if self.size is not None:
            w, h = self.size if rotation % 180 == 0 else self.size[::-1]
            scaled = True
        elif self.max_side is not None and max(w, h) > self.max_side:
            scale = self.max_side / max(w, h)
            w, h = max(1, round(w * scale)), max(1, round(h * scale))
            scaled = True
        if self.even:
            if scaled:
                w, h = max(2, 2 * round(w / 2)), max(2, 2 * round(h / 2))
            else:
                w, h = max(2, w - w % 2), max(2, h - h % 2)
                scaled = w > width or h > height  # A 1-pixel side cannot be cropped to an even size.
        if scaled:
            check_frame_size(w, h, f"`size` {w}x{h}" if self.size is not None else "output frames", mentions=("size",))
        return (w, h), scaled and (w, h) != (width, height)


def probe_kind(path: str | Path) -> str:
    """Classify an input as ``"frames"`` (folder or glob), ``"image"`` or ``"video"``, or raise :class:`MediaError`."""
    text = str(path)
    p = Path(path)
    if p.is_dir():
        return "frames"
    if not p.exists():
        if any(ch in text for ch in "*?["):
            return "frames"
        raise MediaError(f"{path}: no such file or folder")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return "image"
    return "video"
