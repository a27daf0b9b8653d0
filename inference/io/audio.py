"""Audio passthrough: copy a video's audio packets into the output without re-encoding, trimmed at packet level.

Trimming keeps the packets whose start time lies in ``[origin, end)``, so the cut is exact to within one packet
(1024 samples, about 21-23 ms, for AAC; 1152 samples, about 26 ms, for MP3).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


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
        self.streams = {}
        for stream in self.input.streams.audio:
            name = stream.codec_context.name
            supported = getattr(output, "supported_codecs", None)
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
        self.output = output
        self._packets = self._iter() if self.streams else iter(())
        self._pending = None
        self.copied = 0

    def _iter(self):
        for packet in self.input.demux([s for s in self.input.streams.audio if s.index in self.streams]):
            if packet.dts is None and packet.pts is None:
                continue  # The demuxer's end-of-stream marker.
            tb = packet.time_base
            t = float((packet.pts if packet.pts is not None else packet.dts) * tb)
            if self.trim and t < self.origin - 1e-9:
                continue
            if self.end is not None and t >= self.end - 1e-9:
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
