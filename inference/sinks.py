"""Writers chosen by the output's extension: video containers, GIF, folders of PNG frames, single images.

Every sink writes to the (temporary) path it is given; renaming into place is :mod:`inference.atomic`'s job.
Frames arrive as ``uint8 [H, W, 3]`` RGB arrays in coded orientation with their pts in ``MediaInfo.time_base``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.errors import MediaError
from inference.sources import IMAGE_EXTENSIONS, MediaInfo

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
_DEFAULT_CODECS = {".webm": "libvpx-vp9"}


@dataclass
class EncodeOptions:
    """Encoder settings.

    Attributes:
        codec: Video encoder (``None``: libx264, or libvpx-vp9 for .webm).
        crf: Constant rate factor for x264/x265/VP9 (lower is better quality).
        preset: x264/x265 speed preset.
        pix_fmt: Output pixel format; yuv420p (the default) plays everywhere and needs even sizes.
        gif_fps: GIF frame rate (``None`` keeps the input's timing).
        gif_width: GIF width in pixels (``None`` keeps the size); the height follows the aspect ratio.
        audio: Copy the input's audio streams into video outputs.
    """

    codec: str | None = None
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "yuv420p"
    gif_fps: float | None = None
    gif_width: int | None = None
    audio: bool = True


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


def display(array: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a coded frame for display: ``rotation`` degrees counter-clockwise (formats without rotation tags)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(array, k)) if k else array


def _check_av(exc: Exception, path: Path) -> MediaError:
    return MediaError(f"{path}: cannot write ({str(exc).splitlines()[0]})")


class VideoSink:
    """Encode frames into a video container, keeping pts, frame rate and rotation, and copying audio.

    Args:
        path: File to write (its extension picks the container).
        info: The source's description.
        options: Encoder settings.
        container_ext: The extension choosing the muxer, when ``path`` is a temporary name.
    """

    def __init__(self, path: Path, info: MediaInfo, options: EncodeOptions, container_ext: str | None = None) -> None:
        import av

        self.path, self.info = Path(path), info
        ext = (container_ext or self.path.suffix).lower()
        fmt = {".mkv": "matroska", ".m4v": "mp4"}.get(ext, ext.lstrip("."))
        codec = options.codec or _DEFAULT_CODECS.get(ext, "libx264")
        try:
            self.container = av.open(str(path), mode="w", format=fmt)
            self.stream = self.container.add_stream(codec, rate=info.rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"{path}: cannot use codec {codec!r} for {ext} ({exc})") from None
        self.stream.width, self.stream.height = info.width, info.height
        self.stream.pix_fmt = options.pix_fmt
        # PyAV defaults encoders to slice threads; frame threads let x264 use every core (the encoder, not the
        # network, limited end-to-end speed on an H100 at 640x360).
        self.stream.codec_context.thread_type = "AUTO"
        # Keep the input's time base so that every pts (variable frame rate included) is written unchanged.
        self.stream.time_base = info.time_base
        self.stream.codec_context.time_base = info.time_base
        opts = {}
        if codec in ("libx264", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"):
            opts["crf"] = str(options.crf)
        if codec in ("libx264", "libx265"):
            opts["preset"] = options.preset
        if codec.startswith("libvpx"):
            opts["b"] = "0"  # Constant quality mode.
        self.stream.options = opts
        if info.rotation:
            self.stream.set_display_rotation(info.rotation)
        self.audio = None
        if options.audio and info.kind == "video" and info.has_audio:
            from inference.audio import AudioCopier

            self.audio = AudioCopier(info.path, self.container, origin=info.origin, end=info.end, trim=info.start > 0)
        self.frames = 0

    def write(self, array: np.ndarray, pts: int) -> None:
        """Encode one ``uint8 [H, W, 3]`` RGB frame with presentation timestamp ``pts`` (in the source time base)."""
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = pts
        frame.time_base = self.info.time_base
        try:
            self._mux(self.stream.encode(frame))
        except av.error.FFmpegError as exc:
            raise _check_av(exc, self.path) from None
        self.frames += 1

    def _mux(self, packets) -> None:
        for packet in packets:
            if self.audio is not None and packet.dts is not None:
                self.audio.copy_until(float(packet.dts * packet.time_base))
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and finalise the container."""
        import av

        try:
            self._mux(self.stream.encode())
            if self.audio is not None:
                self.audio.copy_until()
            self.container.close()
        except av.error.FFmpegError as exc:
            raise _check_av(exc, self.path) from None
        finally:
            if self.audio is not None:
                self.audio.close()

    def abort(self) -> None:
        """Release files after an error (the temporary output is deleted by the caller)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the original error matters, not the cleanup's.
            pass
        if self.audio is not None:
            self.audio.close()


class FolderSink:
    """Write numbered PNG frames ``frame_000001.png``, ... into a folder, rotated for display."""

    def __init__(self, path: Path, info: MediaInfo) -> None:
        self.path, self.info = Path(path), info
        self.frames = 0

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


class ImageSink:
    """Write the first frame as one image (format from the extension); later frames are ignored."""

    def __init__(self, path: Path, info: MediaInfo, ext: str) -> None:
        self.path, self.info, self.ext = Path(path), info, ext.lower()
        self.frames = 0

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


def open_sink(path: Path, final: Path, info: MediaInfo, options: EncodeOptions):
    """Create the writer for ``final``'s kind, writing to the temporary ``path``."""
    kind = output_kind(final)
    if kind == "video":
        return VideoSink(path, info, options, container_ext=final.suffix)
    if kind == "gif":
        from inference.gif import GifSink

        return GifSink(path, info, options)
    if kind == "image":
        return ImageSink(path, info, final.suffix)
    return FolderSink(path, info)


__all__ = ["EncodeOptions", "FolderSink", "ImageSink", "VideoSink", "open_sink", "output_kind"]
