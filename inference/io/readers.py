"""Open any supported input by its kind: videos through :mod:`inference.io.video_reader`, images, frame folders and
globs through :mod:`inference.io.image_reader`."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.core.errors import OptionError
from inference.io.image_reader import ImageSequenceSource
from inference.io.limits import MAX_SECONDS
from inference.io.media import Resize, probe_kind
from inference.io.protocols import Source
from inference.io.video_reader import VideoSource
from inference.io.writers import display


def open_source(
    path: str | Path,
    *,
    resize: Resize | None = None,
    start: float | None = None,
    duration: float | None = None,
    fps: Fraction | float | None = None,
    planes: bool = False,
) -> Source:
    """Open any supported input.

    Args:
        path: A video file, an image file, a folder of frames or a glob pattern.
        resize: Resizing rules.
        start: Seconds to skip.
        duration: Seconds to keep.
        fps: Frame rate for image sequences (ignored for videos, which keep their own timing).
        planes: Let a video source yield I420 planes when its stream allows (see :class:`VideoSource`).

    Returns:
        A :class:`~inference.io.protocols.Source`.

    Raises:
        OptionError: ``start`` or ``duration`` out of range.
        MediaError: Missing input, not a video or image, no frames.
    """
    if start is not None and not 0 <= start <= MAX_SECONDS:
        raise OptionError("start", f"must be in [0, {MAX_SECONDS:g}] seconds, got {start}")
    if duration is not None and not 0 < duration <= MAX_SECONDS:
        raise OptionError("duration", f"must be in (0, {MAX_SECONDS:g}] seconds, got {duration}")
    kind = probe_kind(path)
    if kind == "video":
        return VideoSource(path, resize, start, duration, planes=planes)
    return ImageSequenceSource(path, resize, fps, start, duration)


def read_frames(path: str | Path, *, upright: bool = False, **kwargs) -> Iterator[np.ndarray]:
    """Yield the frames of any supported input as ``uint8 [H, W, 3]`` RGB arrays (see :func:`open_source`).

    With ``upright`` each frame is turned by the stream's rotation tag into display orientation (a contiguous copy
    when turned); without it frames come as stored.
    """
    source = open_source(path, **kwargs)
    try:
        for frame in source.frames():
            yield np.ascontiguousarray(display(frame.array, source.info.rotation)) if upright else frame.array
    finally:
        source.close()
