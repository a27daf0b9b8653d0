"""Frame sizes each software encoder can take, checked before the encoder is ever called.

Some encoders do not refuse a size they cannot handle: libx265 corrupts its heap (and glibc aborts the process)
on frames narrower than about 50 pixels. So sizes are never tried; they are compared with :data:`SIZE_LIMITS`, the
smallest width and height each encoder was measured to encode (``bench/encoder_limits.py``, which probes every size
in a subprocess; its record is ``bench/results/encoder-limits.json``). Multiples come from the pixel format's chroma
subsampling (4:2:0 needs even sides). Encoders not in the table (NVENC, any other FFmpeg name) are opened at the
real size instead (:func:`inference.io.encoders.resolve_encoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.core.errors import OptionError


@dataclass(frozen=True)
class SizeLimit:
    """Smallest frame an encoder takes, in pixels (every larger size passed the probe)."""

    min_width: int
    min_height: int


# Measured by bench/encoder_limits.py with the options VideoSink uses (frame threads for x264/x265).
SIZE_LIMITS = {
    "libx264": SizeLimit(1, 1),
    "libx265": SizeLimit(49, 16),  # Narrower frames corrupt its heap; lower than 16 rows it refuses.
    "libvpx-vp9": SizeLimit(1, 1),
    "libsvtav1": SizeLimit(26, 26),  # Smaller frames crash it natively, like libx265.
    "gif": SizeLimit(1, 1),
}


def size_multiples(pix_fmt: str) -> tuple[int, int]:
    """``(width, height)`` multiples that ``pix_fmt``'s chroma subsampling needs (2 per subsampled direction)."""
    import av

    fmt = av.VideoFormat(pix_fmt, 16, 16)
    if len(fmt.components) < 2 or fmt.is_rgb:
        return 1, 1
    chroma = fmt.components[1]
    return 16 // chroma.width, 16 // chroma.height


def check_size(name: str, pix_fmt: str, width: int, height: int) -> None:
    """Refuse a ``width`` x ``height`` frame that encoder ``name`` cannot code in ``pix_fmt``.

    Raises:
        OptionError: One line naming the encoder, the size and its limit (fields `pix_fmt` or `codec`).
    """
    mw, mh = size_multiples(pix_fmt)
    if width % mw or height % mh:
        raise OptionError(
            "pix_fmt", f"{pix_fmt} needs width a multiple of {mw} and height of {mh}, got {width}x{height}"
        )
    limit = SIZE_LIMITS.get(name)
    if limit is not None and (width < limit.min_width or height < limit.min_height):
        raise OptionError(
            "codec",
            f"{name} needs frames of at least {limit.min_width}x{limit.min_height}, got {width}x{height} "
            "(use `size` or another `codec`)",
            mentions=("size", "codec"),
        )
