"""Live sources and sinks: cameras and network streams in, files, stream URLs or stdout out, through FFmpeg (PyAV).

Inputs: ``/dev/video0`` (V4L2), ``FORMAT:DEVICE`` for FFmpeg's other capture inputs (``avfoundation:0`` on macOS,
``dshow:video=Camera`` on Windows, ``v4l2:/dev/video2``, ``lavfi:testsrc2=size=640x360:rate=25``), and the URLs
``rtsp://``, ``udp://``, ``rtp://``, ``srt://``, ``tcp://``, ``http(s)://``, ``rtmp://``. Outputs: a video file, or
``udp://``/``srt://``/``tcp://`` (MPEG-TS), ``rtmp://`` (FLV), ``rtsp://`` (RTSP), ``-`` (MPEG-TS on stdout).

Nothing here treats a URL as a path: :mod:`inference.io.video_reader` is for files, which it may seek in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from inference.core.errors import MediaError
from inference.io.ffmpeg_waits import Waits, cancellable, wait_for
from inference.io.media import Resize
from inference.io.protocols import StreamSink, StreamSource

log = logging.getLogger("inference")

INPUT_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp", "http", "https")
DEVICE_FORMATS = ("v4l2", "avfoundation", "dshow", "lavfi", "x11grab", "gdigrab")
#: Output URL scheme -> muxer.
OUTPUT_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv",
                  "rtmps": "flv", "rtsp": "rtsp"}  # fmt: skip
#: Seconds to wait for a stream to open and for each packet: a dead source fails with one line instead of hanging.
OPEN_TIMEOUT, READ_TIMEOUT = 15.0, 10.0
DEFAULT_RATE = Fraction(25)


@dataclass(frozen=True)
class LiveInput:
    """A live input: what FFmpeg opens (``target``), with which demuxer (``format``: ``None`` to probe)."""

    target: str
    format: str | None
    kind: str  # "device" or "stream"


def scheme(text: str) -> str | None:
    """The URL scheme of ``text`` (lower case) when it has the ``scheme://`` form, else ``None``."""
    head, sep, _ = str(text).partition("://")
    return head.lower() if sep and head.isalpha() else None


def live_input(text: str) -> LiveInput | None:
    """Classify ``text`` as a camera or stream input, or ``None`` for a file, folder or glob."""
    text = str(text)
    if scheme(text) in INPUT_SCHEMES:
        return LiveInput(text, None, "stream")
    if text.startswith("/dev/video"):
        return LiveInput(text, "v4l2", "device")
    fmt, sep, device = text.partition(":")
    if sep and fmt in DEVICE_FORMATS and device:
        return LiveInput(device, fmt, "device")
    return None


def live_output(text: str) -> tuple[str, str] | None:
    """``(target, muxer)`` for a stream URL or ``-`` (stdout), or ``None`` for a file."""
    text = str(text)
    if text == "-":
        return "pipe:1", "mpegts"
    fmt = OUTPUT_FORMATS.get(scheme(text) or "")
    return (text, fmt) if fmt else None


def _open_options(source: LiveInput) -> dict[str, str]:
    """Demuxer and protocol options: the transport each protocol needs."""
    # No "-fflags nobuffer": it drops the packets read while probing, and with them every frame of an MPEG-TS file
    # served over HTTP (tests/test_live_cli.py).
    options: dict[str, str] = {}
    if scheme(source.target) in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"  # UDP RTP loses packets (smeared frames) on busy links.
    if scheme(source.target) == "udp":
        options["overrun_nonfatal"] = "1"  # A reader that falls behind loses packets, not the stream.
    return options


class LiveSource(StreamSource):
    """Decode a live input into RGB frames with their timestamps.

    Every FFmpeg wait is bounded (:data:`OPEN_TIMEOUT`, :data:`READ_TIMEOUT`) and can be ended at once from another
    thread (:meth:`interrupt`): the stream is opened on a helper thread, so the main thread stays free to take a
    signal (SIGTERM while a silent stream is being opened exits at once), and :meth:`close` ends and joins
    the thread reading :meth:`frames` before the container closes (closing under it crashed the process).

    Args:
        source: From :func:`live_input`, or ``LiveInput(path, None, "file")`` for a file read at its own pace.
        resize: Output size rules (``even`` is always applied: the encoders take 4:2:0).

    Attributes:
        width, height: Frame size after resizing (even).
        rate: The stream's nominal frame rate (25 when it does not say).

    Raises:
        MediaError: The input cannot be opened, nothing arrived in time, or it has no video stream (one line naming
            it).
    """

    def __init__(self, source: LiveInput, resize: Resize | None = None) -> None:
        self.source = source
        self._stopping = False
        self._reader: threading.Thread | None = None
        self._waits: Waits | None = None
        self.container = _open_input(source)
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"{source.target}: no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.rate = Fraction(self.stream.average_rate or self.stream.guessed_rate or DEFAULT_RATE)
        rule = Resize(resize.size, resize.max_side, True) if resize else Resize(even=True)
        (self.width, self.height), self._scaled = rule.target(self.stream.width, self.stream.height)

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ``(uint8 [H, W, 3] RGB, seconds)``; seconds from the stream's timestamps (or the frame rate).

        Ends when the input ends, when :meth:`interrupt` is called, or when nothing arrives for
        :data:`READ_TIMEOUT` seconds after some frames (a stalled source: a warning, and the frames so far stand).

        Raises:
            MediaError: Nothing decodable arrived (one line naming the input and what did not arrive).
        """
        import av

        index = 0
        with cancellable() as waits:
            self._reader, self._waits = threading.current_thread(), waits
            if self._stopping:  # interrupt() came before this thread registered its waits: nothing to read.
                return
            try:
                for frame in self.container.decode(self.stream):
                    if self._stopping:
                        return
                    seconds = float(frame.time) if frame.time is not None else index / float(self.rate)
                    index += 1
                    yield frame.to_ndarray(width=self.width, height=self.height, format="rgb24"), seconds
            except av.error.ExitError:  # FFmpeg's wait was ended: interrupt(), or READ_TIMEOUT passed.
                if waits.cancelled or self._stopping:
                    return
                if index == 0:
                    raise MediaError(
                        f"{self.source.target}: no video frame arrived in {READ_TIMEOUT:g} s after the stream opened"
                    ) from None
                log.warning(
                    "%s: nothing arrived for %g s after %d frames; taking the stream as ended",
                    self.source.target, READ_TIMEOUT, index,
                )  # fmt: skip
            except (av.error.FFmpegError, UnicodeError) as exc:
                if self._stopping:
                    return
                if index == 0:
                    raise MediaError(f"{self.source.target}: cannot decode ({_short(exc)})") from None
                log.warning(
                    "%s: the input ended with an error after %d frames (%s)", self.source.target, index, _short(exc)
                )

    def interrupt(self) -> None:
        """Make :meth:`frames` end now, from any thread: a wait for the next packet returns at once."""
        self._stopping = True
        if self._waits is not None:
            self._waits.cancel()

    def close(self) -> None:
        """End and join the thread reading :meth:`frames`, then release the input.

        If that thread is still inside FFmpeg after :data:`READ_TIMEOUT` (it could not be interrupted), the
        container is left open: freeing it under a running read is a native crash, a leak at exit is not.
        """
        self.interrupt()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            if not wait_for(reader, READ_TIMEOUT + 2.0):
                log.warning("%s: the input's reader did not stop; the input is left open", self.source.target)
                return
        self.container.close()


def _open_input(source: LiveInput):
    """Open ``source`` on a helper thread; the calling thread waits in short steps, so a signal is taken at once.

    A :class:`KeyboardInterrupt` (Ctrl-C, or SIGTERM as :class:`~inference.core.errors.Terminated`) raised while
    waiting ends the helper's FFmpeg wait, joins it, closes what it may have opened, and propagates.
    """
    import av

    outcome: dict = {}

    def open_here() -> None:
        with cancellable() as waits:
            outcome["waits"] = waits
            try:
                outcome["container"] = av.open(
                    source.target, format=source.format, options=_open_options(source),
                    timeout=(OPEN_TIMEOUT, READ_TIMEOUT), metadata_errors="replace",
                )  # fmt: skip
            except av.error.ExitError:  # Cancelled (the caller is taking a signal), or OPEN_TIMEOUT passed.
                outcome["error"] = "cancelled" if waits.cancelled else _nothing_arrived(source)
            except av.error.InvalidDataError as exc:  # Bytes arrived, but no format FFmpeg knows.
                outcome["error"] = f"{source.target}: what arrived is not a stream FFmpeg can read ({_short(exc)})"
            except (av.error.FFmpegError, OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                outcome["error"] = f"{source.target}: cannot open ({_short(exc)})"

    helper = threading.Thread(target=open_here, name="live-open", daemon=True)
    helper.start()
    try:
        wait_for(helper, float("inf"))
    except BaseException:
        waits = outcome.get("waits")
        if waits is not None:
            waits.cancel()
        if wait_for(helper, OPEN_TIMEOUT + 2.0) and "container" in outcome:
            outcome["container"].close()
        raise
    if "error" in outcome:
        raise MediaError(outcome["error"])
    return outcome["container"]


def _nothing_arrived(source: LiveInput) -> str:
    """The line for an input that stayed silent: what did not arrive, where, and for how long."""
    waited = f"in {OPEN_TIMEOUT:g} s"
    if source.kind == "stream":
        # "Nothing arrived" would be wrong for bytes FFmpeg could not recognise in time: no *stream* arrived.
        return f"no stream arrived on {source.target} {waited} (is the sender running, and sending to that address?)"
    return f"no picture came from {source.target} {waited}"


class LiveSink(StreamSink):
    """Encode RGB frames into a file, a stream URL or stdout, with the timestamps given.

    Args:
        target: A file path (written as given; atomic renaming is the caller's) or a URL from :func:`live_output`.
        muxer: The container format (``None``: from the file's extension).
        size: ``(width, height)``, even.
        rate: Nominal frame rate; timestamps are kept in units of ``1 / rate``.
        encoder: From :func:`inference.io.encoders.resolve_encoder`.
        stream: Whether the output is a live stream (no B-frames, zero-latency tuning for x264).

    Raises:
        MediaError: The output cannot be opened (one line naming it).
    """

    def __init__(self, target: str, muxer: str | None, size: tuple[int, int], rate: Fraction, encoder, *, stream: bool):
        import av

        self.target = target
        try:
            self.container = av.open(target, mode="w", format=muxer)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"{target}: cannot write ({_short(exc)})") from None
        self.rate = Fraction(rate).limit_denominator(1001)
        self.video = self.container.add_stream(encoder.name, rate=self.rate)
        self.video.width, self.video.height = size
        self.video.pix_fmt = encoder.pix_fmt
        options = dict(encoder.options)
        if stream and encoder.name in ("libx264", "libx265"):
            options["tune"] = "zerolatency"
        self.video.options = options
        if stream:
            self.video.codec_context.gop_size = max(1, round(float(self.rate)))  # A keyframe a second to join on.
        self.frames = 0
        self._last_pts = -1

    def write(self, array: np.ndarray, seconds: float) -> None:
        """Encode ``uint8 [H, W, 3]`` RGB shown at ``seconds`` (strictly increasing timestamps are kept so)."""
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        pts = max(round(seconds * self.rate), self._last_pts + 1)
        frame.pts, frame.time_base = pts, 1 / self.rate
        self._last_pts = pts
        try:  # A stream output connects on its first packet: a refused or dropped receiver shows here.
            for packet in self.video.encode(frame):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaError(f"{self.target}: cannot write ({_short(exc)})") from None
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the container (the file is then complete and playable).

        Raises:
            MediaError: The output could not take the last packets (one line naming it).
        """
        import av

        try:
            for packet in self.video.encode():
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaError(f"{self.target}: cannot write ({_short(exc)})") from None
        finally:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError) as exc:  # The trailer of an output that is already gone.
                log.warning("%s: cannot finish the output (%s)", self.target, _short(exc))


def _short(exc: BaseException) -> str:
    """The library's words for ``exc`` on one line: FFmpeg's and the OS's own text, without errno or file name."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200] or type(exc).__name__
