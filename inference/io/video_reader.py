"""The video reader: decode a video's first video stream with PyAV (NVDEC where present), trimmed and resized.

Frames come out either as RGB ``uint8 [H, W, 3]`` (swscale converts on the host, with the stream's matrix and range)
or, when asked for and the stream is 8-bit 4:2:0, as the decoder's own I420 planes ``uint8 [H * 3 / 2, W]`` with no
conversion at all, so that the device does the colour work. Images, folders and globs are read in
:mod:`inference.io.image_reader`; the shared types live in :mod:`inference.io.media`.

Timestamps: without ``start`` the output keeps the input's timestamps exactly (a stream that starts at 10 s still
starts at 10 s), and ``duration`` counts from the stream's first timestamp. With ``start`` the output starts at 0.
Frames without timestamps (raw ``.h264``) are numbered one frame duration apart from the stream start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.core.devices import decoder_threads, nvdec_device
from inference.core.errors import MediaError
from inference.core.stages import StageClock
from inference.io.colour_tags import SWS_COLORSPACE, ColourTags, chroma_left_sited
from inference.io.media import DEFAULT_FOLDER_FPS, MediaInfo, Resize, SourceFrame
from inference.io.protocols import Source

log = logging.getLogger(__name__)

# Decoder output formats handed over as I420 planes without a colour conversion (nv12 is what NVDEC downloads;
# reordering its chroma into I420 is a copy, not a conversion).
PLANAR_420 = {"yuv420p", "yuvj420p", "nv12"}
# The formats NVDEC frames arrive in once PyAV has downloaded them (the CUDA frames context's software formats).
NVDEC_DOWNLOAD_FORMATS = {"nv12", "p010le", "p016le", "yuv444p", "yuv444p16le", "nv16", "p210le", "p216le"}


class VideoSource(Source):
    """Decode a video's first video stream (NVDEC or frame-threaded software), optionally trimmed and resized.

    Args:
        path: Any file FFmpeg can demux and decode.
        resize: Resizing rules (done by swscale, in YUV for planes and together with the conversion for RGB).
        start: Seconds to skip from the start of the stream.
        duration: Seconds to keep, or ``None`` for all.
        planes: Yield I420 planes instead of RGB when the stream is 8-bit 4:2:0 and the output size is even
            (``info.yuv`` then says how to decode them; it stays ``None`` for RGB frames).
        hwaccel: Try NVDEC (FFmpeg's CUDA hwaccel) first; fall back to software decoding if it cannot be used.
    """

    def __init__(
        self,
        path: str | Path,
        resize: Resize | None = None,
        start: float | None = None,
        duration: float | None = None,
        *,
        planes: bool = False,
        hwaccel: bool = True,
    ) -> None:
        self.path = Path(path)
        self.resize = resize or Resize()
        self.error: str | None = None
        self.decoded = 0
        self._open(start, hwaccel)
        tb, rate = self.time_base, self.rate
        rotation = int(self._first.rotation) % 360
        size = (self._first.width, self._first.height)
        (w, h), self._scaled = self.resize.target(*size, rotation)
        self.colour = ColourTags.from_frame(self._first)
        self.planes = planes and self._first.format.name in PLANAR_420 and (self._scaled or (w, h) == size)
        self._origin = max(self._start_pts, self._start_pts + int(round(start / tb))) if start else 0
        self._end_pts = None if duration is None else (self._origin or self._start_pts) + int(round(duration / tb))
        self._header_frames = int(self.stream.frames or 0)  # Read now: the stream is gone once the file is closed.
        self._duration = _duration(self.container, self.stream)
        self._last_pts = 0
        self.info = MediaInfo(
            kind="video",
            path=self.path,
            width=w,
            height=h,
            rotation=rotation,
            rate=Fraction(rate),
            time_base=tb,
            n_frames=_trimmed_count(_expected_frames(self.container, self.stream, rate), rate, start, duration),
            start=float(start or 0.0),
            origin=float(self._origin * tb),
            end=None if self._end_pts is None else float(self._end_pts * tb),
            has_audio=bool(self.container.streams.audio),
            input_size=size,
            colour=self.colour,
            yuv=self.colour.yuv_spec(*size, chroma_left_sited(self.stream.codec_context.name)) if self.planes else None,
        )

    def _try_attach(self, hw) -> bool:
        """Open the container with decoder ``hw``; ``False`` when a hardware decoder fails (software errors raise)."""
        try:
            self._attach(hw)
        except MediaError:
            if hw is None:
                raise
            return False
        return True

    def _open(self, start: float | None, hwaccel: bool) -> None:
        """Open the container and decode the first frame, on NVDEC if it works, else in software."""
        for hw in _hwaccel_candidates(hwaccel):
            if not self._try_attach(hw):
                continue
            self._first = self._decode_first(start, seek=True)
            if self._first is None and start:
                # Some demuxers (MPEG-TS with few keyframes) seek past the target: decode from the start instead.
                self.container.close()
                if not self._try_attach(hw):
                    continue
                self._first = self._decode_first(start, seek=False)
            if self._first is not None or hw is None:
                break
            self.container.close()  # NVDEC opened but decoded nothing: try again in software.
            self.error = None
        if self._first is None:
            self.container.close()
            where = f" after --start {start}" if start else ""
            raise MediaError(f"{self.path}: no decodable video frames{where}")
        self.decoder = _decoder_name(self.stream, hw is not None, self._first)
        log.info("%s: decoding with %s", self.path, self.decoder)

    def _attach(self, hw) -> None:
        """Open the container (with ``hw``, a PyAV ``HWAccel``, or ``None``) and describe its first video stream."""
        self.container = _open_container(self.path, hw)
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"{self.path}: has no video stream")
        s = self.stream = self.container.streams.video[0]
        s.thread_type = "AUTO"  # Frame + slice threads: software decoding scales with cores.
        # NVDEC: few enough frame threads that the decode surfaces stay within NVDEC's limit; software: the worker's
        # share of the host cores in a multi-worker run (see inference.core.devices).
        s.thread_count = decoder_threads(nvdec=hw is not None)
        self.time_base = s.time_base or Fraction(1, 90000)
        self._start_pts = s.start_time or 0
        # Without timestamps the demuxer's average rate is a guess (25); the bitstream's timing is better.
        rates = (s.average_rate, s.guessed_rate) if s.start_time is not None else (s.guessed_rate, s.average_rate)
        self.rate = Fraction(rates[0] or rates[1] or s.base_rate or DEFAULT_FOLDER_FPS)
        self._step = max(1, int(round(1 / (self.rate * self.time_base))))

    def _decode_first(self, start: float | None, seek: bool):
        """Seek (to the keyframe before ``start``) and decode up to the first frame at or after ``start``."""
        import av

        target = self._start_pts + int(round((start or 0.0) / self.time_base))
        if start and seek and self.stream.start_time is not None:
            # Streams without timestamps are not seeked: their frames are numbered from the start instead.
            try:
                self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                pass  # Unseekable input: decode from the start and drop frames instead.
        self._iter = self._timestamped(self._decode_iter())
        for frame, pts in self._iter:
            if not start or pts >= target - 1:
                self._first_pts = pts
                return frame
        return None

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

    def _timestamped(self, frames) -> Iterator[tuple[object, int]]:
        """``(frame, pts)``; a frame without a pts is placed one frame duration after the previous one."""
        last = None
        for frame in frames:
            pts = frame.pts
            if pts is None:
                pts = self._start_pts if last is None else last + self._step
            last = pts
            yield frame, pts

    def frames(self, clock: StageClock | None = None) -> Iterator[SourceFrame]:
        """Yield frames with their pts relative to the trim start, as planes or RGB at the target size.

        Args:
            clock: Accumulates ``decode`` (demux, decode, YUV resize) and ``colour`` (swscale to RGB) busy time.
        """
        clock = clock or StageClock()
        last_pts = None
        frames = clock.timed(_chain((self._first, self._first_pts), self._iter), "decode")
        self._first = None
        for frame, pts in frames:
            if self._end_pts is not None and pts >= self._end_pts:
                break
            pts -= self._origin
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1  # Encoders need strictly increasing timestamps.
            last_pts = self._last_pts = pts
            if self.planes:
                with clock.time("decode"):
                    array = self._planes(frame)
            else:
                with clock.time("colour"):
                    array = self._rgb(frame)
            yield SourceFrame(array, pts=pts, index=self.decoded)
            self.decoded += 1
        self.close()

    def _filter(self) -> str:
        """The resize filter of the project's one resize policy (:func:`inference.io.image_reader.resize_image`):
        area averaging when shrinking, bicubic when enlarging."""
        in_w, in_h = self.info.input_size
        return "AREA" if self.info.width * self.info.height <= in_w * in_h else "BICUBIC"

    def _planes(self, frame) -> np.ndarray:
        """I420 planes ``uint8 [H * 3 / 2, W]`` at the target size (swscale only to resize or to unpack nv12)."""
        if self._scaled or frame.format.name == "nv12":
            fmt = "yuvj420p" if frame.format.name == "yuvj420p" else "yuv420p"
            frame = frame.reformat(self.info.width, self.info.height, format=fmt, interpolation=self._filter())
        return frame.to_ndarray()

    def _rgb(self, frame) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]`` at the target size, converted with the stream's matrix and range."""
        w, h = self.info.width, self.info.height
        colour = {
            "src_colorspace": SWS_COLORSPACE[self.colour.matrix_name(*self.info.input_size)],
            "src_color_range": "JPEG" if self.colour.full_range else "MPEG",
        }
        if self._scaled:
            return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation=self._filter(), **colour)
        arr = frame.to_ndarray(format="rgb24", **colour)
        return np.ascontiguousarray(arr[:h, :w]) if arr.shape[:2] != (h, w) else arr

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


def _hwaccel_candidates(hwaccel: bool) -> list:
    """``[HWAccel("cuda"), None]`` when FFmpeg was built with CUDA and NVDEC is wanted, else ``[None]``.

    The hardware decoder runs on the GPU bound by :func:`inference.core.devices.bind_media_device` and never falls back
    to software silently: a stream NVDEC refuses fails to decode, and :meth:`VideoSource._open` reopens it in software
    (with the reason in the debug log) instead of decoding in software behind an NVDEC label.
    """
    if not hwaccel:
        return [None]
    from av.codec.hwaccel import HWAccel, hwdevices_available

    if "cuda" not in hwdevices_available():
        return [None]
    return [HWAccel("cuda", device=nvdec_device(), allow_software_fallback=False), None]


def _open_container(path: Path, hw):
    """``av.open`` for reading; an error is a :class:`MediaError` (NVDEC failures too: the caller falls back)."""
    import av

    try:
        return av.open(str(path), mode="r") if hw is None else av.open(str(path), mode="r", hwaccel=hw)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        if hw is not None:
            log.debug("%s: NVDEC unavailable (%s); decoding in software", path, _short(exc))
        raise MediaError(f"{path}: not a video or image ({_short(exc)})") from None
    except RuntimeError as exc:  # PyAV: "Hardware accelerated decode requested but no stream is compatible"
        if hw is None:
            raise
        log.debug("%s: NVDEC unavailable (%s); decoding in software", path, _short(exc))
        raise MediaError(f"{path}: no stream NVDEC can decode") from None


def decoded_on_nvdec(hw: bool, codec_format: str | None, frame_format: str | None) -> bool:
    """Whether NVDEC really decoded, judged from what came out rather than from what was asked for.

    ``codec_context.is_hwaccel`` only says a hardware device was attached; with a software fallback it stays true.
    The codec's negotiated format (``"cuda"``) and the first frame's format (a CUDA frame, or one of NVDEC's download
    formats such as nv12, where a software H.264 decoder gives yuv420p) say what happened.

    Args:
        hw: A hardware decoder was attached.
        codec_format: The codec context's pixel format after the first frame (``"cuda"`` on NVDEC).
        frame_format: The first decoded frame's pixel format.
    """
    if not hw:
        return False
    return frame_format == "cuda" or (codec_format == "cuda" and frame_format in NVDEC_DOWNLOAD_FORMATS)


def _decoder_name(stream, hw: bool, first_frame) -> str:
    """One line naming the decoder, e.g. ``h264 on NVDEC (cuda:1)`` or ``h264 (software, frame threads)``."""
    ctx = stream.codec_context
    codec_format = ctx.format.name if ctx.format is not None else None  # None until the decoder knows it
    frame_format = first_frame.format.name
    if decoded_on_nvdec(hw, codec_format, frame_format):
        return f"{ctx.name} on NVDEC (cuda:{nvdec_device() or 0}, {ctx.thread_count} threads)"
    return f"{ctx.name} (software, {ctx.thread_type.name.lower()} threads)"


def _chain(first, rest):
    if first[0] is not None:
        yield first
    yield from rest


def _trimmed_count(n: int | None, rate, start: float | None, duration: float | None) -> int | None:
    """The expected frame count after trimming ``start`` and keeping ``duration`` seconds."""
    if n is not None and start:
        n = max(1, n - int(round(start * rate)))
    if duration is not None:
        kept = max(1, int(round(duration * rate)))
        n = min(n, kept) if n is not None else kept
    return n


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
