"""The pixel budget every route shares (image upload, webcam frame, video job): checked on the size the work will
really have, after every size-changing control, and before the pixels are decoded.

The bytes limit alone does not bound memory: a 61 KB file can declare a 16000x16000 picture, and ``stroke_scale``
0.25 runs the network on 16 times the frame's pixels. So the budget counts the larger of the frame and the network's
input (:func:`~inference.engine.strokes.stroke_size`) and is read from the file's header (Pillow's size, the video
stream's declared size) before a single pixel is decoded.
"""

from __future__ import annotations

from inference.core.errors import UserError

#: Default budget of uploads (images and each frame of a video job), in pixels: the frame or the network's input,
#: whichever is larger (``stylize-serve --max-megapixels``).
MAX_IMAGE_PIXELS = 50_000_000
#: Webcam frames stream at the camera's rate, so their budget is 4K (or the upload budget, if lower).
MAX_FRAME_PIXELS = 3840 * 2160


def work_pixels(width: int, height: int, stroke_scale: float = 1.0) -> tuple[int, int, int]:
    """``(pixels, network_width, network_height)``: the larger of the frame's and the network's input's pixel counts,
    and the size the network runs at (``stroke_scale`` < 1 enlarges it)."""
    from inference.engine.strokes import stroke_size

    net_h, net_w = stroke_size(height, width, stroke_scale)
    return max(width * height, net_w * net_h), net_w, net_h


def check_pixels(width: int, height: int, limit: int, name: str, stroke_scale: float = 1.0) -> None:
    """Refuse a ``width`` x ``height`` frame whose work (:func:`work_pixels`) exceeds ``limit`` pixels.

    Raises:
        UserError: One line naming ``name``, the size, and the stroke scale when it is what crosses the limit.
    """
    pixels, net_w, net_h = work_pixels(width, height, stroke_scale)
    if pixels <= limit:
        return
    size = f"{width}x{height}"
    if net_w * net_h > width * height:
        size += f" at stroke_scale {stroke_scale:g} (the network runs at {net_w}x{net_h})"
    raise UserError(f"{name}: {size} is more than {limit / 1e6:g} megapixels")
