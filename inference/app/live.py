"""Live stylization for ``stylize-video``: a camera or network stream in, a file, stream URL or stdout out, in real
time.

Three threads, bounded everywhere: the reader decodes into a small buffer, the main thread stylizes, the writer
encodes. When stylizing falls behind a live source, the reader drops the oldest waiting frame (never queues without
bound) and the run reports how many it dropped. Ctrl-C or SIGTERM stops reading, finishes the frames in hand,
flushes the encoder and closes the container, so a file output is complete and playable up to its last frame (it
is written to a temporary name and renamed, like every output).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from inference.core.errors import MediaError, OptionError, UserError
from inference.io.ffmpeg_waits import wait_for
from inference.io.live_io import LiveInput, LiveSink, LiveSource, live_input, live_output
from inference.io.protocols import StreamSink, StreamSource

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.engine.options import RuntimeOptions

log = logging.getLogger("inference")

#: Frames the writer may hold: encoding runs beside stylizing, and a slow encoder slows the stylizer (and then the
#: reader drops) instead of growing a queue.
WRITER_DEPTH = 4
#: File outputs of a live run: video containers (MPEG-TS and FLV too, which stay playable even if cut).
LIVE_FILE_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".flv"}
#: Seconds between progress lines on stderr.
REPORT_EVERY = 5.0


def is_live(inputs: list[str], output: str) -> bool:
    """Whether a ``stylize-video`` command is a live one: a camera or stream input, or a stream or stdout output."""
    return len(inputs) == 1 and (live_input(inputs[0]) is not None or live_output(output) is not None)


@dataclass
class LiveResult:
    """What a live run did: frames read, written and dropped, wall-clock seconds, and why it stopped."""

    read: int = 0
    written: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stopped_by: str | None = None

    def line(self, output: str) -> str:
        """The summary, e.g. ``out.mp4: 250 frames in 10.0s (25.0 frames/s); 3 of 253 dropped``."""
        fps = self.written / self.seconds if self.seconds > 0 else 0.0
        text = f"{output}: {self.written} frames in {self.seconds:.1f}s ({fps:.1f} frames/s)"
        if self.dropped:
            text += f"; {self.dropped} of {self.read} input frames dropped (stylizing was behind)"
        else:
            text += f"; none of {self.read} input frames dropped"
        return text + (f"; stopped by {self.stopped_by}" if self.stopped_by else "")


class FrameBuffer:
    """The reader's bounded buffer: with ``drop``, a full buffer loses its oldest frame (counted); else put waits."""

    def __init__(self, depth: int, drop: bool) -> None:
        self.items: deque = deque()
        self.depth, self.drop = depth, drop
        self.dropped = 0
        self.received = 0
        self.done = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def put(self, item) -> None:
        with self._cond:
            while not self.drop and len(self.items) >= self.depth and not self.done:
                self._cond.wait(0.1)
            if len(self.items) >= self.depth:
                self.items.popleft()
                self.dropped += 1
            self.items.append(item)
            self.received += 1
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.done, self.error = True, self.error or error
            self._cond.notify_all()

    def __iter__(self):
        while True:
            with self._cond:
                while not self.items and not self.done:
                    self._cond.wait(0.1)
                if not self.items:
                    if self.error is not None:
                        raise self.error
                    return
                item = self.items.popleft()
                self._cond.notify_all()
            yield item


def _read(source: StreamSource, buffer: FrameBuffer, stop: threading.Event, pace: bool, duration: float | None) -> None:
    """Reader thread: decode into ``buffer`` until the input ends, ``duration`` seconds are read, or ``stop``."""
    start_wall, first = time.monotonic(), None
    try:
        for array, seconds in source.frames():
            first = seconds if first is None else first
            if stop.is_set() or (duration is not None and seconds - first >= duration):
                break
            if pace:  # A file played like a live source: no frame before its time (FFmpeg's -re).
                ahead = start_wall + seconds - first - time.monotonic()
                if ahead > MAX_PACE_WAIT:  # A timestamp jump (a restarted sender): pace from here, do not stall.
                    start_wall -= ahead
                elif stop.wait(max(0.0, ahead)):
                    break
            buffer.put((array, seconds - first))
        buffer.finish()
    except BaseException as exc:  # Reported by the main thread, in its own words.
        buffer.finish(exc)


#: Longest wait for a frame's time when pacing (a still held for seconds is kept); a later timestamp is a jump in
#: the stream's clock (a restarted sender), not a schedule.
MAX_PACE_WAIT = 10.0


class _Writer:
    """Writer thread: encodes stylized frames from a small queue into the sink."""

    def __init__(self, sink: StreamSink) -> None:
        self.sink, self.error = sink, None
        self.queue: queue.Queue = queue.Queue(maxsize=WRITER_DEPTH)
        self.progress = time.monotonic()  # The writer's last sign of life: a write begun or finished.
        self.closing = False  # Closing flushes the encoder's look-ahead: one call that may take seconds.
        self.thread = threading.Thread(target=self._loop, name="live-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            self.progress = time.monotonic()  # A write begins: the time since the last one is not the sink's fault.
            if self.error is None:
                try:
                    self.sink.write(*item)
                except BaseException as exc:
                    self.error = exc
            self.progress = time.monotonic()
        # The sink is closed here, after its last write, never under one; and the encoder's flush (all the frames its
        # look-ahead holds) cannot block the main thread, which stays free to take a signal.
        self.progress, self.closing = time.monotonic(), True
        try:
            self.sink.close()
        except BaseException as exc:
            self.error = self.error or exc

    def put(self, item) -> None:
        """Queue a frame; raises the first write error, or :class:`MediaError` when the sink took nothing for
        :data:`WRITE_TIMEOUT` seconds (a full queue behind a receiver that stopped reading)."""
        self._put(item, WRITE_TIMEOUT)

    def finish(self, seconds: float) -> None:
        """Encode what is queued, close the sink (flushing the encoder) and stop; raises the first write error.

        Raises:
            MediaError: The sink finished no write for ``seconds``, or its closing took over :data:`WRITE_TIMEOUT`
                (a stream output whose receiver stopped reading).
        """
        self._put(None, seconds)
        while self.thread.is_alive():
            self.thread.join(0.1)
            idle = time.monotonic() - self.progress
            if self.thread.is_alive() and idle > (WRITE_TIMEOUT if self.closing else seconds):
                raise self.stuck(round(idle))
        if self.error is not None:
            raise self.error

    def _put(self, item, seconds: float) -> None:
        """Queue ``item``, waiting while the sink works, but not ``seconds`` past the writer's last sign of life."""
        while True:
            if self.error is not None and item is not None:
                raise self.error  # (After an error the writer skips what is queued, so the end marker gets in.)
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    return
                if time.monotonic() - self.progress > seconds:
                    raise self.stuck(seconds) from None

    def stuck(self, seconds: float) -> MediaError:
        target = getattr(self.sink, "target", "the output")
        return MediaError(f"{target}: the output took nothing for {seconds:g} s (is the receiver still reading?)")


def stylize_live(
    stylizer, source: StreamSource, sink: StreamSink, *, pace: bool, drop: bool, duration=None, quiet=True
):
    """Stylize ``source`` into ``sink`` until the input ends, ``duration`` seconds pass, or Ctrl-C / SIGTERM.

    Args:
        stylizer: A :class:`~inference.engine.stylizer.Stylizer`.
        source, sink: Opened live input and output.
        pace: Read at the input's own frame rate (for files; live sources pace themselves).
        drop: Drop the oldest waiting frame when stylizing is behind (live sources, ``--realtime``).
        duration: Seconds of input to stylize, or ``None`` for all of it.
        quiet: No progress lines.

    Returns:
        A :class:`LiveResult`; ``stopped_by`` says ``"Ctrl-C"`` or ``"SIGTERM"`` when a signal ended the run (the
        output is complete either way; ``sink`` is closed).
    """
    from inference.core.errors import Terminated

    result, t0 = LiveResult(), time.perf_counter()
    buffer, stop = FrameBuffer(max(2, stylizer.batch_size), drop), threading.Event()
    reader = threading.Thread(
        target=_read, args=(source, buffer, stop, pace, duration), name="live-reader", daemon=True
    )
    reader.start()
    writer, last_report = _Writer(sink), t0
    try:
        for out, seconds in stylizer.process(iter(buffer)):
            writer.put((out, seconds))
            result.written += 1
            if not quiet and time.perf_counter() - last_report > REPORT_EVERY:
                last_report = time.perf_counter()
                print(f"{result.written} frames, {buffer.dropped} dropped", file=sys.stderr, flush=True)
    except KeyboardInterrupt as exc:
        result.stopped_by = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
    finally:
        # The reader stops first and is joined before any container closes: a reader still inside FFmpeg when its
        # input is freed crashes the process. interrupt() ends its wait for the next packet at once.
        stop.set()
        source.interrupt()
        buffer.finish()
        if not wait_for(reader, READ_JOIN_TIMEOUT):
            log.warning("the input's reader did not stop within %g s", READ_JOIN_TIMEOUT)
        # After a signal a stalled output gets less time: a service manager's kill follows soon.
        writer.finish(WRITE_TIMEOUT if result.stopped_by is None else min(WRITE_TIMEOUT, SIGNAL_WRITE_TIMEOUT))
    result.read, result.dropped, result.seconds = buffer.received, buffer.dropped, time.perf_counter() - t0
    return result


#: Seconds to wait for the reader after a stop: its read is interrupted at once, so this only bounds a failure.
READ_JOIN_TIMEOUT = 5.0
#: Seconds the writer may take to encode what is queued after the input ends; a sink that takes nothing that long is
#: a receiver that stopped reading (one line, instead of a run that never ends).
WRITE_TIMEOUT = 15.0
#: The same after Ctrl-C or SIGTERM.
SIGNAL_WRITE_TIMEOUT = 5.0


def run_live(
    model: str,
    src: str,
    output: str,
    runtime_options: RuntimeOptions,
    file_options: FileOptions,
    *,
    realtime: bool = False,
    quiet: bool = False,
) -> int:
    """``stylize-video`` with a live input or output (see :func:`is_live`); returns the exit status (0).

    Args:
        model: The ``.safetensors`` artifact.
        src: A camera, a stream URL, or a file played into a stream output (or read in real time, ``realtime``).
        output: A video file, a stream URL or ``-`` (stdout).
        runtime_options: The Stylizer's options.
        file_options: The output size (``trim.size``, ``trim.max_side``), ``trim.duration``, the encoder settings
            (``encode.codec``, ``crf``, ``preset``; ``pix_fmt`` yuv420p only) and ``overwrite``; ``trim.start``
            is refused (a live input cannot be skipped into).
        realtime: Read a file input at its own frame rate and drop frames when stylizing falls behind.
        quiet: No progress lines or summary.
    """
    from inference.app.jobs import load_stylizer
    from inference.core.atomic import atomic_output, check_destination
    from inference.io.encoders import resolve_encoder
    from inference.io.media import probe_kind

    _check_live_options(output, file_options)
    live_in = live_input(src)
    if live_in is None:  # A file played into a stream output.
        probe_kind(src)
        live_in = LiveInput(src, None, "file")
    stream_out = live_output(output)
    dst = None if stream_out else check_destination(output, overwrite=file_options.overwrite, is_dir=False)
    # The model loads first: a stream opened earlier would pile up frames meanwhile, to be dropped on arrival.
    stylizer = load_stylizer(model, runtime_options)
    source = LiveSource(live_in, file_options.trim.resize(even=True))
    try:
        size, encode = (source.width, source.height), file_options.encode
        ext = dst.suffix.lower() if dst else ".ts"
        encoder = resolve_encoder(encode.codec, ext, encode.crf, encode.preset, encode.pix_fmt, size=size)
        # Live inputs are read at their frame rate too: a no-op for cameras and live streams, and what makes a
        # file behind a URL (http://host/clip.mp4) play in real time instead of racing ahead and being dropped.
        paced = live_in.kind != "file" or realtime
        run = partial(stylize_live, stylizer, source, pace=paced, drop=paced, duration=file_options.trim.duration,
                      quiet=quiet)  # fmt: skip
        if dst is None:
            result = _some_frames(run(LiveSink(*stream_out, size, source.rate, encoder, stream=True)), src)
        else:
            with atomic_output(dst, suffix=dst.suffix) as tmp:  # no frame: the error removes the temporary file
                result = _some_frames(run(LiveSink(str(tmp), None, size, source.rate, encoder, stream=False)), src)
    finally:
        source.close()
    if not quiet:
        print(result.line(output), file=sys.stderr)
    return 0


def _some_frames(result: LiveResult, source: str) -> LiveResult:
    """``result``, unless no frame arrived and no signal stopped the run: then one line (and no empty output)."""
    if result.written == 0 and result.stopped_by is None:
        raise UserError(f"{source}: no video frames arrived")
    return result


def _check_live_options(output: str, file_options: FileOptions) -> None:
    """Options that mean nothing for a live run fail with one line."""
    if file_options.trim.start is not None:
        raise OptionError(
            "start",
            ": a live input cannot be skipped into; use `duration` to stop after some seconds",
            mentions=("duration",),
        )
    suffix = Path(output).suffix.lower()
    if live_output(output) is None and suffix not in LIVE_FILE_EXTENSIONS:
        raise UserError(
            f"{output}: a live run writes a video file ({', '.join(sorted(LIVE_FILE_EXTENSIONS))}), a stream "
            "URL (udp://, srt://, tcp://, rtmp://, rtsp://) or - for stdout"
        )
    if file_options.encode.pix_fmt != "yuv420p":
        raise OptionError("pix_fmt", ": a live run encodes yuv420p")
