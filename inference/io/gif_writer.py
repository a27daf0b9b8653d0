"""Palette-optimised GIF writing with FFmpeg's palettegen/paletteuse filters, in one PyAV filter graph.

The graph is ffmpeg's well-known recipe
``[fps=N,]scale=W:-1:flags=lanczos,split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=sierra2_4a``,
plus a transpose for rotated inputs. paletteuse waits for the palette, which palettegen emits only at the end of
the stream, so the graph holds every (GIF-sized) frame in memory until the input ends: fine for GIF-length clips.

GIF frame delays are whole hundredths of a second, and browsers play delays of 10 ms or less as 100 ms, so a clip
above 50 frames/s (from ``--gif-fps`` or from the input's own rate) is resampled to 50 frames/s, with a warning.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.core.errors import MediaError, OptionError
from inference.io.encode_options import EncodeOptions
from inference.io.limits import MAX_GIF_SIDE, MIN_GIF_FPS, check_frame_size
from inference.io.media import MediaInfo
from inference.io.protocols import Sink

_TRANSPOSE = {90: ["transpose=cclock"], 180: ["hflip", "vflip"], 270: ["transpose=clock"]}
MAX_GIF_FPS = 50  # 20 ms delays: the shortest that browsers play as written

log = logging.getLogger(__name__)


def gif_rate(requested: float | None, source_rate: Fraction) -> Fraction | None:
    """The frame rate to resample the GIF to, or ``None`` to keep the input's timing.

    Args:
        requested: The requested GIF frame rate (``gif_fps``), or ``None``.
        source_rate: The input's average frame rate.
    """
    if requested is not None and requested > MAX_GIF_FPS:
        log.warning(
            "`gif_fps` %g capped at %d (GIF delays are in 1/100 s; browsers slow shorter ones down to 100 ms)",
            requested,
            MAX_GIF_FPS,
            extra={"mentions": ("gif_fps",)},
        )
        return Fraction(MAX_GIF_FPS)
    if requested is not None:  # >= MIN_GIF_FPS: checked by EncodeOptions
        return Fraction(requested).limit_denominator(1001)
    if source_rate < MIN_GIF_FPS:
        log.warning("input at %.4g frames/s resampled to %g frames/s for the GIF (longer delays do not fit a GIF)",
                    float(source_rate), MIN_GIF_FPS)  # fmt: skip
        return Fraction(MIN_GIF_FPS)
    if source_rate > MAX_GIF_FPS:
        log.warning(
            "input at %.4g frames/s resampled to %d frames/s for the GIF (browsers slow shorter delays down to 100 ms)",
            float(source_rate),
            MAX_GIF_FPS,
        )
        return Fraction(MAX_GIF_FPS)
    return None


def gif_size(info: MediaInfo, width: int) -> tuple[int, int]:
    """``(width, height)`` of a GIF ``width`` pixels wide with the input's display aspect ratio (height >= 1).

    Raises:
        OptionError: A GIF larger than a GIF (65535 per side) or FFmpeg can hold (the field ``gif_width``).
    """
    w, h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
    size = width, max(1, round(width * h / w))
    if max(size) > MAX_GIF_SIDE:
        raise OptionError("gif_width", f"{width}: a {size[0]}x{size[1]} GIF has a side over {MAX_GIF_SIDE} pixels")
    check_frame_size(*size, f"`gif_width` {width}", mentions=("gif_width",))
    return size


class GifSink(Sink):
    """Write frames as an animated GIF with a palette computed from the whole clip.

    Args:
        path: File to write.
        info: The source's description (size, time base, rotation).
        options: ``gif_fps`` and ``gif_width``.
    """

    def __init__(self, path: Path, info: MediaInfo, options: EncodeOptions) -> None:
        import av
        import av.filter

        self.path, self.info = Path(path), info
        self.graph = av.filter.Graph()
        chain = [self.graph.add_buffer(width=info.width, height=info.height, format="rgb24", time_base=info.time_base)]
        filters: list[tuple[str, str]] = [
            (name.split("=")[0], name.partition("=")[2]) for name in _TRANSPOSE.get(info.rotation, [])
        ]
        rate = gif_rate(options.gif_fps, info.rate)
        if rate is not None:
            # eof_action=pass: a clip shorter than one output frame still gives its first frame.
            filters.append(("fps", f"{rate}:eof_action=pass"))
        if options.gif_width:
            filters.append(("scale", "{}:{}:flags=lanczos".format(*gif_size(info, int(options.gif_width)))))
        for name, args in filters:
            chain.append(self.graph.add(name, args))
        for a, b in zip(chain, chain[1:], strict=False):
            a.link_to(b)
        split = self.graph.add("split")
        palettegen = self.graph.add("palettegen", "stats_mode=diff")
        paletteuse = self.graph.add("paletteuse", "dither=sierra2_4a")
        self.sink = self.graph.add("buffersink")
        chain[-1].link_to(split)
        split.link_to(palettegen, 1, 0)
        split.link_to(paletteuse, 0, 0)
        palettegen.link_to(paletteuse, 0, 1)
        paletteuse.link_to(self.sink)
        try:
            self.graph.configure()
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot build the GIF filter graph ({exc})") from None
        self.frames = 0
        self.yuv_spec = None  # The palette filters take RGB.
        self._out: list = []

    def write(self, array: np.ndarray, pts: int) -> None:
        """Feed one ``uint8 [H, W, 3]`` RGB frame to the palette graph."""
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = pts, self.info.time_base
        self.graph.push(frame)
        self._drain()
        self.frames += 1

    def _drain(self) -> None:
        import av

        while True:
            try:
                self._out.append(self.graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    def close(self) -> None:
        """Compute the palette, dither every frame and write the file."""
        import av

        if self.frames == 0:
            raise MediaError(f"{self.path}: no frames to write")
        self.graph.push(None)
        self._drain()
        if not self._out:
            raise MediaError(f"{self.path}: the GIF filter graph kept none of the {self.frames} frames")
        first = self._out[0]
        with av.open(str(self.path), mode="w", format="gif", options={"loop": "0"}) as container:
            stream = container.add_stream("gif", rate=self.info.rate)
            stream.width, stream.height, stream.pix_fmt = first.width, first.height, "pal8"
            stream.codec_context.time_base = first.time_base
            for frame in self._out:
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        self._out.clear()

    def abort(self) -> None:
        """Drop the buffered frames."""
        self._out.clear()
