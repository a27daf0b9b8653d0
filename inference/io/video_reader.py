"""Readers: videos (anything FFmpeg decodes, through PyAV), single images, frame folders (natural sort) and globs.

Every source yields :class:`SourceFrame` objects holding an RGB ``uint8 [H, W, 3]`` array plus the frame's
presentation timestamp, so that writers can keep the input's exact timing (variable frame rate included).
Videos are read here; images, folders and globs in :mod:`inference.io.image_reader`; the shared types live in
:mod:`inference.io.media` and are re-exported from this module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.errors import MediaError
from inference.io.media import DEFAULT_FOLDER_FPS, MediaInfo, Resize, SourceFrame

log = logging.getLogger(__name__)


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
