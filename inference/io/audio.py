"""Audio passthrough: copy a video's audio packets into the output without re-encoding, trimmed at packet level.

Trimming keeps the packets whose start time lies in ``[origin, end)``, so the cut is exact to within one packet
(1024 samples, about 21-23 ms, for AAC; 1152 samples, about 26 ms, for MP3). Reading starts with a seek shortly
before ``origin`` and stops once every copied stream has passed ``end``, so a short cut from a long file reads only
the packets around it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

# Seconds to seek before the cut: seeking lands on an index entry at or before the target, never exactly on it.
_SEEK_MARGIN = 1.0
# Muxers interleave streams by time within a second or so (Matroska clusters up to a few seconds); past this, no
# packet of any stream can still start before ``end`` (a stream that ends early would otherwise keep us reading).
_INTERLEAVE_SLACK = 10.0


class AudioCopier:
    """Remux the audio streams of ``src`` into ``output``, interleaved with the video by time.

    Args:
        src: The input media file (opened a second time, so that video decoding and audio copying are independent).
        output: An open PyAV output container, before its first packet is muxed.
        origin: Absolute input time (s) that becomes output time 0; packets before it are dropped when ``trim``.
        end: Absolute input time (s) where the output stops, or ``None``.
        trim: Whether ``origin`` is a cut (``--start``) rather than just the time origin.
    """

    def __init__(self, src: str | Path, output, *, origin: float = 0.0, end: float | None = None, trim: bool = False):
        import av

        self.origin, self.end, self.trim = origin, end, trim
        self.input = av.open(str(src))
        try:
            self._add_streams(src, output)
        except BaseException:
            self.input.close()  # Nothing else will: the caller never gets this object.
            raise
        self.output = output
        self._packets = self._iter() if self.streams else iter(())
        self._pending = None
        self.copied = 0
        self.demuxed = 0  # Packets read from the input, copied or not.

    def _add_streams(self, src: str | Path, output) -> None:
        """One output stream per input audio stream whose codec the output container accepts."""
        self.streams = {}
        for stream in self.input.streams.audio:
            name = stream.codec_context.name
            supported = output.supported_codecs
            if supported is not None and name not in supported:
                log.warning(
                    "%s: audio codec %s cannot go into %s; audio stream %d dropped",
                    src,
                    name,
                    output.format.name,
                    stream.index,
                )
                continue
            self.streams[stream.index] = output.add_stream_from_template(stream)

    def _seek_to_origin(self) -> None:
        """Skip the file's head when trimming, instead of demuxing every packet before ``origin``."""
        import av

        target = self.origin - _SEEK_MARGIN
        if not self.trim or target <= 0:
            return
        try:
            self.input.seek(int(target * av.time_base), backward=True, any_frame=False)
        except av.error.FFmpegError:
            self.input.seek(0)  # Unseekable input: read from the start; packets before origin are dropped below.

    def _iter(self):
        self._seek_to_origin()
        passed: set[int] = set()  # Streams that have reached ``end``.
        for packet in self.input.demux([s for s in self.input.streams.audio if s.index in self.streams]):
            if packet.dts is None and packet.pts is None:
                continue  # The demuxer's end-of-stream marker.
            self.demuxed += 1
            tb = packet.time_base
            t = float((packet.pts if packet.pts is not None else packet.dts) * tb)
            if self.trim and t < self.origin - 1e-9:
                continue
            if self.end is not None and t >= self.end - 1e-9:
                passed.add(packet.stream.index)
                if len(passed) == len(self.streams) or t >= self.end + _INTERLEAVE_SLACK:
                    return
                continue
            shift = int(round(self.origin / tb)) if self.origin else 0
            if shift:
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            yield t - self.origin, packet

    def copy_until(self, seconds: float = math.inf) -> None:
        """Mux every remaining audio packet that starts before output time ``seconds``."""
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            t, packet = self._pending
            if t >= seconds:
                return
            packet.stream = self.streams[packet.stream.index]
            self.output.mux(packet)
            self.copied += 1
            self._pending = None

    def close(self) -> None:
        """Release the input."""
        self.input.close()
