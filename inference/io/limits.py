"""Bounds on times, frame rates and frame sizes that every reader, writer and the CLI share (no heavy imports).

Each bound is where a library stops working, not a taste: beyond it the value overflows a timestamp, leaves a GIF
frame without a representable delay, or makes FFmpeg refuse the image. Checking them once, before any work, turns
what would be a traceback deep in PyAV into one line naming the option.
"""

from __future__ import annotations

from inference.core.errors import UserError

# Seconds (--start, --duration): about 31 years. Converted to pts in time bases down to 1/1e9 s this still fits the
# int64 timestamps of FFmpeg; 1e308 would overflow to infinity.
MAX_SECONDS = 1e9
# A GIF frame delay is a 16-bit count of 1/100 s, so the slowest GIF rate is 100/65535 frames/s; 0.01 (one frame
# every 100 s) keeps every delay representable. Above 50 browsers slow a GIF down (inference.io.gif_writer).
MIN_GIF_FPS = 0.01
# GIF sizes are 16-bit (--gif-width and the height it gives).
MAX_GIF_SIDE = 65535
# Frame rates given to image sequences (--fps), as fractions over at most 1001 (NTSC's 30000/1001): from one frame
# every 1000 s to 1000 frames/s, each frame lasts a whole number of time-base units that muxers can store.
MIN_FPS = 0.001
MAX_FPS = 1000.0
# Frames per forward pass (--batch-size): a batch is gathered in host memory before it runs, so an unbounded size
# would read a whole long video into RAM first (the kernel then kills the process). 256 frames of 1080p are 1.6 GB.
MAX_BATCH_SIZE = 256
# FFmpeg's av_image_check_size: (width + 128) * (height + 128) < INT_MAX / 8, or swscale and encoders refuse.
_MAX_PADDED_AREA = (2**31 - 1) // 8


def frame_size_problem(width: int, height: int) -> str | None:
    """Why FFmpeg would refuse ``width`` x ``height`` frames, or ``None`` when it takes them."""
    if (width + 128) * (height + 128) >= _MAX_PADDED_AREA:
        return f"{width}x{height} is beyond FFmpeg's image size limit ((width + 128) * (height + 128) < 2^28)"
    return None


def check_frame_size(width: int, height: int, what: str, *, mentions: tuple[str, ...] = ()) -> None:
    """Refuse frames FFmpeg cannot hold, naming ``what`` asked for them (``"`size` 100000x100000"``, with the
    field in backticks and in ``mentions``; see :class:`~inference.core.errors.UserError`).

    Raises:
        UserError: One line.
    """
    problem = frame_size_problem(width, height)
    if problem is not None:
        raise UserError(f"{what}: {problem}", mentions=mentions)
