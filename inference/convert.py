"""One file in, one file out: stylize a video, image, frame folder or glob into a video, GIF, folder or image.

Readers and writers live in :mod:`inference.io`; this module ties them to a :class:`~inference.stylizer.Stylizer`
through the threaded pipeline of :mod:`inference.pipeline`, writing atomically (:mod:`inference.atomic`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from inference.atomic import atomic_output, check_destination
from inference.errors import MediaError
from inference.io.media import Resize
from inference.io.readers import open_source
from inference.io.writers import EncodeOptions, open_sink, output_kind
from inference.pipeline import run_pipeline
from inference.progress import Progress

if TYPE_CHECKING:
    from inference.stylizer import Stylizer

log = logging.getLogger("inference")

# Chroma subsampled horizontally and vertically: width and height must be even.
_EVEN_FORMATS = {"yuv420p", "yuvj420p", "nv12", "yuv420p10le"}


@dataclass
class StylizeResult:
    """What :func:`stylize_file` did.

    Attributes:
        output: The written file or folder.
        frames: Number of frames written.
        seconds: Wall-clock time of the whole run.
        warnings: One-line warnings (truncated input, size changed for the encoder, dropped audio...).
    """

    output: Path
    frames: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames written per second of wall-clock time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def stylize_file(
    stylizer: Stylizer,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    start: float | None = None,
    duration: float | None = None,
    size: tuple[int, int] | None = None,
    max_side: int | None = None,
    fps: float | None = None,
    codec: str | None = None,
    crf: int = 18,
    preset: str = "medium",
    pix_fmt: str = "yuv420p",
    gif_fps: float | None = None,
    gif_width: int | None = None,
    audio: bool = True,
    progress: bool = False,
) -> StylizeResult:
    """Stylize ``src`` into ``dst``; the output kind follows ``dst``'s extension.

    Args:
        stylizer: The configured runner.
        src: A video, an image, a folder of frames or a glob.
        dst: A video container (.mp4, .mkv, .mov, .webm, .avi), a ``.gif``, an image, or a folder (no extension).
        overwrite: Replace an existing output.
        start: Seconds to skip at the start of the input.
        duration: Seconds of input to keep.
        size: Output ``(width, height)`` in display orientation.
        max_side: Shrink so that the longest side is at most this many pixels.
        fps: Frame rate for image-sequence inputs (videos keep their own timing).
        codec: Video encoder (default libx264; libvpx-vp9 for .webm).
        crf: Encoder quality (lower is better).
        preset: x264/x265 speed preset.
        pix_fmt: Video pixel format; with the default yuv420p odd sizes lose their last row/column.
        gif_fps: GIF frame rate (default: the input's timing).
        gif_width: GIF width in pixels (default: the frame width).
        audio: Copy the input's audio into video outputs (never re-encoded).
        progress: Show a progress bar on stderr.

    Returns:
        A :class:`StylizeResult`.

    Raises:
        MediaError: Unreadable input, unsupported or unwritable output, existing output without ``overwrite``.
    """
    t0 = time.perf_counter()
    kind = output_kind(dst)
    even = kind == "video" and pix_fmt in _EVEN_FORMATS
    # The input is checked first: "no such file" is a better first message than "output exists".
    source = open_source(
        src, resize=Resize(size, max_side, even), start=start, duration=duration, fps=Fraction(fps) if fps else None
    )
    try:
        dst = check_destination(dst, overwrite=overwrite, is_dir=kind == "frames")
        src_path = Path(src)
        if src_path.exists() and dst.exists() and os.path.samefile(src_path, dst):
            raise MediaError(f"{dst}: output would overwrite the input")
    except BaseException:
        source.close()
        raise
    info = source.info
    warnings: list[str] = []
    if even and size is None and max_side is None and (info.width, info.height) != info.input_size:
        warnings.append(
            f"{dst}: {pix_fmt} needs even sizes: {info.input_size[0]}x{info.input_size[1]} cropped to "
            f"{info.width}x{info.height} (use --pix-fmt yuv444p to keep every pixel)"
        )
    try:
        limit = 1 if kind == "image" else None
        if limit and info.n_frames and info.n_frames > 1:
            warnings.append(f"{dst}: image output: only the first of {info.n_frames} frames is stylized")
        options = EncodeOptions(codec, crf, preset, pix_fmt, gif_fps, gif_width, audio)
        bar = Progress(limit or info.n_frames, enabled=progress)
        with atomic_output(dst, is_dir=kind == "frames", suffix=dst.suffix) as tmp:
            sink = open_sink(tmp, dst, info, options)
            try:
                produce = _limited(source.frames(), limit)

                def consume(item) -> None:
                    array, pts = item
                    sink.write(array, pts)
                    bar.update()

                run_pipeline(
                    ((f.array, f.pts) for f in produce),
                    stylizer.process,
                    consume,
                    depth=max(8, 2 * stylizer.batch_size),
                )
                if sink.frames == 0:
                    raise MediaError(f"{src}: no decodable video frames")
                sink.close()
            except BaseException:
                sink.abort()
                raise
        truncated = None if limit else getattr(source, "truncation_warning", lambda: None)()
        if truncated:
            warnings.append(truncated)
        for w in warnings:
            log.warning(w)
        frames = sink.frames if kind != "image" else 1
        bar.close(f"{dst}: {frames} frames in {time.perf_counter() - t0:.1f}s ({bar.rate():.1f} frames/s)")
    finally:
        source.close()
    return StylizeResult(dst, frames, time.perf_counter() - t0, warnings)


def _limited(frames, limit: int | None):
    for i, frame in enumerate(frames):
        if limit is not None and i >= limit:
            return
        yield frame
