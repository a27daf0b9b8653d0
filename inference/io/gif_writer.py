"""Palette-optimised GIF writing with FFmpeg's palettegen/paletteuse filters, in one PyAV filter graph.

The graph is ffmpeg's well-known recipe
``[fps=N,]scale=W:-1:flags=lanczos,split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=sierra2_4a``,
plus a transpose for rotated inputs. paletteuse waits for the palette, which palettegen emits only at the end of
the stream, so the graph holds every (GIF-sized) frame in memory until the input ends: fine for GIF-length clips.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.errors import MediaError
from inference.io.media import MediaInfo
from inference.io.writers import EncodeOptions

_TRANSPOSE = {90: ["transpose=cclock"], 180: ["hflip", "vflip"], 270: ["transpose=clock"]}


class GifSink:
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
        if options.gif_fps:
            filters.append(("fps", str(Fraction(options.gif_fps).limit_denominator(1001))))
        if options.gif_width:
            filters.append(("scale", f"{int(options.gif_width)}:-1:flags=lanczos"))
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
        self._last_pts: int | None = None
        self._out: list = []

    def write(self, array: np.ndarray, pts: int) -> None:
        """Feed one ``uint8 [H, W, 3]`` RGB frame to the palette graph."""
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = pts, self.info.time_base
        self._last_pts = pts
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
