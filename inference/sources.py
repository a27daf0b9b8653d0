"""Readers: videos (anything FFmpeg decodes, through PyAV), single images, frame folders (natural sort) and globs.

Every source yields :class:`SourceFrame` objects holding an RGB ``uint8 [H, W, 3]`` array plus the frame's
presentation timestamp, so that writers can keep the input's exact timing (variable frame rate included).
"""

from __future__ import annotations

import glob as globlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.errors import MediaError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
DEFAULT_FOLDER_FPS = Fraction(25)


@dataclass
class SourceFrame:
    """One decoded frame.

    Attributes:
        array: ``uint8 [H, W, 3]`` RGB, C-contiguous, in coded (not display-rotated) orientation.
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


@dataclass
class Resize:
    """How a source resizes frames: an explicit display size, a cap on the long side, and/or even dimensions.

    Attributes:
        size: ``(width, height)`` in display orientation, or ``None``.
        max_side: Longest side cap in pixels (only ever shrinks), or ``None``.
        even: Make both dimensions even (yuv420p video needs it): resized frames are rounded to even sizes,
            frames that are not otherwise resized lose their last odd row/column (a crop, never a stretch).
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
        return (w, h), scaled and (w, h) != (width, height)


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


class VideoSource:
    """Decode a video's first video stream with PyAV (frame-threaded), optionally trimmed and resized.

    Args:
        path: Any file FFmpeg can demux and decode.
        resize: Resizing rules (done by swscale together with the YUV to RGB conversion).
        start: Seconds to skip from the start of the stream.
        duration: Seconds to keep, or ``None`` for all.
    """

    def __init__(
        self, path: str | Path, resize: Resize | None = None, start: float | None = None, duration: float | None = None
    ) -> None:
        import av

        self.path = Path(path)
        self.resize = resize or Resize()
        try:
            self.container = av.open(str(path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise MediaError(f"{path}: not a video or image ({_short(exc)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"{path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # Frame + slice threads: decoding H.264 scales with cores.
        tb = self.stream.time_base or Fraction(1, 90000)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate or DEFAULT_FOLDER_FPS
        self._first = self._decode_first(start)
        if self._first is None:
            self.container.close()
            where = f" after --start {start}" if start else ""
            raise MediaError(f"{path}: no decodable video frames{where}")
        rotation = int(getattr(self._first, "rotation", 0) or 0) % 360
        (w, h), self._scaled = self.resize.target(self._first.width, self._first.height, rotation)
        stream_start = self.stream.start_time or 0
        self._origin = stream_start + int(round((start or 0.0) / tb)) if start else 0
        self._end_pts = None if duration is None else self._origin + int(round(duration / tb))
        if start and self._origin < stream_start:
            self._origin = stream_start
        self.expected = _expected_frames(self.container, self.stream, rate)
        self._duration = _duration(self.container, self.stream)
        self._last_pts = 0
        self._header_frames = int(self.stream.frames or 0)  # Read now: the stream is gone once the file is closed.
        n = self.expected
        if n is not None and start:
            n = max(1, n - int(round(start * rate)))
        if duration is not None:
            kept = max(1, int(round(duration * rate)))
            n = min(n, kept) if n is not None else kept
        self.info = MediaInfo(
            kind="video",
            path=self.path,
            width=w,
            height=h,
            rotation=rotation,
            rate=Fraction(rate),
            time_base=tb,
            n_frames=n,
            start=float(start or 0.0),
            origin=float(self._origin * tb),
            end=None if self._end_pts is None else float(self._end_pts * tb),
            has_audio=bool(self.container.streams.audio),
            input_size=(self._first.width, self._first.height),
        )
        self.decoded = 0
        self.error: str | None = None

    def _decode_first(self, start: float | None):
        """Seek (to the keyframe before ``start``) and decode up to the first frame at or after ``start``."""
        import av

        self._iter = self._decode_iter()
        if start:
            tb = self.stream.time_base
            target = (self.stream.start_time or 0) + int(round(start / tb))
            try:
                self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                pass  # Unseekable input: decode from the start and drop frames instead.
            self._iter = self._decode_iter()
            for frame in self._iter:
                if frame.pts is None or frame.pts >= target - 1:
                    return frame
            return None
        return next(self._iter, None)

    def _decode_iter(self):
        import av

        try:
            for packet in self.container.demux(self.stream):
                try:
                    yield from packet.decode()
                except av.error.InvalidDataError as exc:
                    # A damaged packet: skip it like ffmpeg does and keep going.
                    log.debug("skipping undecodable packet: %s", exc)
        except av.error.FFmpegError as exc:
            self.error = _short(exc)

    def frames(self) -> Iterator[SourceFrame]:
        """Yield frames with their pts relative to the trim start, converted to RGB at the target size."""
        w, h = self.info.width, self.info.height
        rate_step = max(1, int(round(1 / (self.info.rate * self.info.time_base))))
        last_pts = None
        first = self._first
        self._first = None
        frames = self._iter if first is None else _chain(first, self._iter)
        for frame in frames:
            pts = frame.pts if frame.pts is not None else (last_pts + rate_step if last_pts is not None else 0)
            if self._end_pts is not None and pts >= self._end_pts:
                break
            pts -= self._origin
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1  # Encoders need strictly increasing timestamps.
            last_pts = pts
            self._last_pts = pts
            if self._scaled:
                arr = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
            else:
                arr = frame.to_ndarray(format="rgb24")
                if arr.shape[:2] != (h, w):
                    arr = np.ascontiguousarray(arr[:h, :w])
            yield SourceFrame(arr, pts=pts, index=self.decoded)
            self.decoded += 1
        self.close()

    def truncation_warning(self) -> str | None:
        """A one-line warning if decoding stopped early or produced fewer frames than the file announces."""
        if self.error is not None:
            return f"{self.path}: decoding stopped after {self.decoded} frames ({self.error}); stylized what decoded"
        if self.info.end is not None or self.decoded == 0:
            return None
        if self._header_frames and not self.info.start and self.decoded < self._header_frames:
            return f"{self.path}: only {self.decoded} of {self._header_frames} frames decoded (truncated file?)"
        # Without an exact frame count (or with variable frame rate), compare decoded time with the duration.
        tb = self.info.time_base
        covered = float((self._last_pts + self._origin) * tb) + 1.0 / float(self.info.rate)
        total = self._duration
        if total is not None and covered < total - 2.0 / float(self.info.rate) - 0.05:
            return (
                f"{self.path}: only {self.decoded} frames decoded, covering {covered:.2f}s of {total:.2f}s "
                "(truncated file?)"
            )
        return None

    def close(self) -> None:
        """Release the demuxer."""
        self.container.close()


def _chain(first, rest):
    yield first
    yield from rest


def _expected_frames(container, stream, rate: Fraction) -> int | None:
    """Frame count from the stream header, or estimated from the duration (``None`` if neither is known)."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return max(1, int(round(float(stream.duration * stream.time_base * rate))))
    if container.duration:
        return max(1, int(round(container.duration / 1_000_000 * float(rate))))
    return None


def _duration(container, stream) -> float | None:
    """The stream's end time in seconds (start + duration), from the stream or the container header."""
    if stream.duration and stream.time_base:
        return float((stream.duration + (stream.start_time or 0)) * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000 + (container.start_time or 0) / 1_000_000
    return None


def _short(exc: BaseException) -> str:
    """The first line of an exception message, without FFmpeg's errno prefix noise."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    return re.sub(r":\s*'[^']*'$", "", text)  # FFmpeg repeats the file name at the end.


def open_source(
    path: str | Path,
    *,
    resize: Resize | None = None,
    start: float | None = None,
    duration: float | None = None,
    fps: Fraction | None = None,
) -> VideoSource | ImageSequenceSource:
    """Open any supported input.

    Args:
        path: A video file, an image file, a folder of frames or a glob pattern.
        resize: Resizing rules.
        start: Seconds to skip.
        duration: Seconds to keep.
        fps: Frame rate for image sequences (ignored for videos, which keep their own timing).

    Returns:
        A source with ``info`` (:class:`MediaInfo`), ``frames()`` and ``close()``.

    Raises:
        MediaError: Missing input, not a video or image, no frames.
    """
    if start is not None and start < 0:
        raise MediaError(f"--start must be >= 0, got {start}")
    if duration is not None and duration <= 0:
        raise MediaError(f"--duration must be > 0, got {duration}")
    kind = probe_kind(path)
    if kind == "video":
        return VideoSource(path, resize, start, duration)
    return ImageSequenceSource(path, resize, fps, start, duration)


def read_frames(path: str | Path, **kwargs) -> Iterator[np.ndarray]:
    """Yield the frames of any supported input as ``uint8 [H, W, 3]`` RGB arrays (see :func:`open_source`)."""
    source = open_source(path, **kwargs)
    try:
        for frame in source.frames():
            yield frame.array
    finally:
        source.close()
