"""Writers chosen by the output's extension: video containers, GIF, folders of PNG frames, single images.

Every sink writes to the (temporary) path it is given; renaming into place is :mod:`inference.core.atomic`'s job.
Frames arrive as ``uint8 [H, W, 3]`` RGB arrays in coded orientation with their pts in ``MediaInfo.time_base``;
the video sink also takes I420 planes (``VideoSink.write_planes``) when its pixel format is yuv420p.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from inference.core.errors import MediaError
from inference.core.stages import StageClock
from inference.io.encode_options import EncodeOptions
from inference.io.encoders import resolve_encoder
from inference.io.media import IMAGE_EXTENSIONS, MediaInfo
from inference.io.protocols import Sink

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}


def output_kind(path: str | Path) -> str:
    """``"video"``, ``"gif"``, ``"image"`` or ``"frames"`` (a folder: no extension or an existing directory).

    Raises:
        MediaError: The extension is none of the supported ones.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if p.is_dir() or str(path).endswith(("/", "\\")) or ext == "":
        return "frames"
    if ext == ".gif":
        return "gif"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    supported = ", ".join(sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS | {".gif"}))
    raise MediaError(f"{path}: unsupported output extension {ext!r} (use one of {supported}, or a folder)")


def check_encoders(options: EncodeOptions, outputs: Iterable[str | Path]) -> None:
    """Open the encoder once per video container among ``outputs``, before anything is decoded: a bad codec, preset,
    pixel format or crf fails once with one line, not once per file.

    Raises:
        UserError: From :func:`~inference.io.encoders.resolve_encoder`.
        MediaError: An output with an unsupported extension.
    """
    for ext in sorted({Path(p).suffix.lower() for p in outputs if output_kind(p) == "video"}):
        resolve_encoder(options.codec, ext, options.crf, options.preset, options.pix_fmt)


def display(array: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a coded frame for display: ``rotation`` degrees counter-clockwise (formats without rotation tags)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(array, k)) if k else array


class FolderSink(Sink):
    """Write numbered PNG frames ``frame_000001.png``, ... into a folder, rotated for display."""

    def __init__(self, path: Path, info: MediaInfo) -> None:
        self.path, self.info = Path(path), info
        self.frames = 0
        self.yuv_spec = None  # PNG frames are written from RGB.

    def write(self, array: np.ndarray, pts: int) -> None:
        """Save one frame."""
        from PIL import Image

        self.frames += 1
        # compress_level 3: close to the default's size at a fraction of its time.
        Image.fromarray(display(array, self.info.rotation)).save(
            self.path / f"frame_{self.frames:06d}.png", compress_level=3
        )

    def close(self) -> None:
        """Nothing buffered."""

    def abort(self) -> None:
        """Nothing to release."""


class ImageSink(Sink):
    """Write the first frame as one image (format from the extension); later frames are ignored."""

    def __init__(self, path: Path, info: MediaInfo, ext: str) -> None:
        self.path, self.info, self.ext = Path(path), info, ext.lower()
        self.frames = 0
        self.yuv_spec = None  # PIL writes the image from RGB.

    def write(self, array: np.ndarray, pts: int) -> None:
        """Save the frame if it is the first."""
        from PIL import Image

        if self.frames == 0:
            fmt = Image.registered_extensions()[self.ext]
            kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
            Image.fromarray(display(array, self.info.rotation)).save(self.path, format=fmt, **kwargs)
        self.frames += 1

    def close(self) -> None:
        """Nothing buffered."""

    def abort(self) -> None:
        """Nothing to release."""


def open_sink(
    path: Path, final: Path, info: MediaInfo, options: EncodeOptions, clock: StageClock | None = None
) -> Sink:
    """Create the writer for ``final``'s kind, writing to the temporary ``path`` (``clock`` times video encoding)."""
    kind = output_kind(final)
    if kind == "video":
        from inference.io.video_writer import VideoSink

        return VideoSink(path, info, options, container_ext=final.suffix, clock=clock)
    if kind == "gif":
        from inference.io.gif_writer import GifSink

        return GifSink(path, info, options)
    if kind == "image":
        return ImageSink(path, info, final.suffix)
    return FolderSink(path, info)
