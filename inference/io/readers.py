"""Open any supported input by its kind: videos through :mod:`inference.io.video_reader`, images, frame folders and
globs through :mod:`inference.io.image_reader`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inference.io.image_reader import ImageSequenceSource
from inference.io.media import probe_kind
from inference.io.protocols import Source
from inference.io.trim import TrimOptions
from inference.io.video_reader import VideoSource
from inference.io.writers import display


def open_source(
    path: str | Path, trim: TrimOptions | None = None, *, even: bool = False, planes: bool = False, **fields: Any
) -> Source:
    """Open any supported input.

    Args:
        path: A video file, an image file, a folder of frames or a glob pattern.
        trim: The part to read and the frame size (:class:`~inference.io.trim.TrimOptions`); ``None``: all of it,
            as stored.
        even: Make both frame dimensions even (see :class:`~inference.io.media.Resize`).
        planes: Let a video source yield I420 planes when its stream allows (see :class:`VideoSource`).
        **fields: :class:`~inference.io.trim.TrimOptions` fields that replace ``trim``'s (``start=2.0``...).

    Returns:
        A :class:`~inference.io.protocols.Source`.

    Raises:
        OptionError: A trim or size field out of range.
        MediaError: Missing input, not a video or image, no frames.
    """
    trim = TrimOptions.build(trim, **fields)
    resize = trim.resize(even)
    kind = probe_kind(path)
    if kind == "video":
        return VideoSource(path, resize, trim.start, trim.duration, planes=planes)
    return ImageSequenceSource(path, resize, trim.fps, trim.start, trim.duration)


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
