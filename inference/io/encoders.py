"""Choosing and configuring the video encoder: NVENC where the GPU has it, every option checked before decoding.

``--codec`` takes an encoder name (``libx264``, ``h264_nvenc``...) or a family (``h264``, ``hevc``, ``av1``); a family,
and the default, resolve to the NVENC encoder when one opens on this machine (probed once per process), else to the
software encoder; a family whose NVENC encoder refuses the pixel format, the frame size or the options falls back to
its software encoder with one log line. ``--crf`` and ``--preset`` become each encoder's own settings
(:mod:`inference.io.encode_options`); sizes an encoder cannot take are refused before it is called
(:mod:`inference.io.encoder_limits`).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from fractions import Fraction

from inference.core.errors import OptionError, UserError
from inference.io.encode_options import DEFAULT_PIX_FMT, quality_options
from inference.io.encoder_limits import SIZE_LIMITS, check_size

log = logging.getLogger(__name__)

# Family -> encoders to try in order: the NVENC one first, then software.
FAMILIES = {
    "h264": ("h264_nvenc", "libx264"),
    "hevc": ("hevc_nvenc", "libx265"),
    "h265": ("hevc_nvenc", "libx265"),
    "av1": ("av1_nvenc", "libsvtav1", "libaom-av1"),
    "vp9": ("libvpx-vp9",),
}
_DEFAULT_FAMILY = {".webm": "vp9"}
# What NVENC takes for a --pix-fmt it does not list: P010 for 10-bit 4:2:0, and the full-range yuvj formats as
# their plain twins (the full range travels in the stream's colour tags, as FFmpeg does for NVENC).
NVENC_PIX_FMTS = {"yuv420p10le": "p010le", "yuvj420p": "yuv420p", "yuvj444p": "yuv444p"}
_PROBE_SIZE = (256, 256)
# Encoders that print a banner of info lines on stderr whenever they open: quieted to errors, so that a one-line
# error (or -q) is not buried under them. SVT-AV1 reads its level from the environment (a user's own setting stays).
_QUIET = {"libx265": {"x265-params": "log-level=error"}}
_QUIET_ENV = {"libsvtav1": ("SVT_LOG", "1")}


@dataclass(frozen=True)
class Encoder:
    """A resolved encoder: its FFmpeg name, the private options that carry ``--crf`` and ``--preset``, and the pixel
    format its frames are coded in (``--pix-fmt``, or NVENC's equivalent from :data:`NVENC_PIX_FMTS`)."""

    name: str
    options: dict
    pix_fmt: str = DEFAULT_PIX_FMT

    @property
    def nvenc(self) -> bool:
        """Whether this is an NVIDIA hardware encoder."""
        return self.name.endswith("_nvenc")

    @property
    def x26x(self) -> bool:
        """Whether this is libx264 or libx265 (frame-threaded on every host core)."""
        return self.name in ("libx264", "libx265")


def coded_pix_fmt(name: str, pix_fmt: str) -> str:
    """The pixel format encoder ``name`` codes ``--pix-fmt`` in (NVENC takes p010le for yuv420p10le, ...)."""
    return NVENC_PIX_FMTS.get(pix_fmt, pix_fmt) if name.endswith("_nvenc") else pix_fmt


@functools.cache
def open_failure(
    name: str, pix_fmt: str = DEFAULT_PIX_FMT, options: tuple = (), size: tuple[int, int] = _PROBE_SIZE
) -> str | None:
    """Open encoder ``name`` once at ``size`` (no frame is encoded): ``None`` if it works, else FFmpeg's reason."""
    import av

    if name in _QUIET_ENV:
        os.environ.setdefault(*_QUIET_ENV[name])

    try:
        ctx = av.codec.CodecContext.create(name, "w")
        (ctx.width, ctx.height), ctx.pix_fmt = size, pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.options = dict(options)
        ctx.open()
    except Exception as exc:  # noqa: BLE001 - every failure means "not usable here" (no GPU, no driver, bad option).
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def resolve_encoder(
    codec: str | None, ext: str, crf: int, preset: str, pix_fmt: str, *, size: tuple[int, int] | None = None
) -> Encoder:
    """Pick and check the encoder for ``--codec`` (a name, a family or ``None``) before anything is decoded.

    Args:
        codec: An FFmpeg encoder name, a family (h264, hevc, av1, vp9) or ``None`` for the container's default.
        ext: The output's extension (``.webm`` defaults to VP9, everything else to H.264).
        crf: Constant quality (lower is better), in the range of :data:`~inference.io.encode_options.CRF_RANGES`.
        preset: Speed preset (x264 names, mapped per encoder; NVENC also takes p1..p7).
        pix_fmt: Output pixel format.
        size: Coded ``(width, height)`` of the frames, when known: checked against the encoder's size limits
            (:mod:`inference.io.encoder_limits`), and NVENC is probed at it.

    Returns:
        The :class:`Encoder`, already opened once with these options. A family whose NVENC encoder refuses the pixel
        format, size or options falls back to its software encoder, with one log line saying why.

    Raises:
        UserError: Unknown codec or pixel format, a pixel format or size the encoder cannot take, a bad preset or crf.
    """
    candidates = _candidates(codec, ext)
    _check_pix_fmt(pix_fmt)
    for i, name in enumerate(candidates):
        if not name.endswith("_nvenc") or i + 1 == len(candidates):
            return _checked(name, crf, preset, pix_fmt, size)
        if open_failure(name) is not None:
            continue  # No NVENC here: the software encoder of the family follows, silently.
        try:
            return _checked(name, crf, preset, pix_fmt, size)
        except UserError as exc:
            _warn_once(f"{exc}: encoding with {candidates[i + 1]} instead")
    raise OptionError("codec", f"{codec}: no encoder of this family is available")


@functools.cache
def _warn_once(message: str) -> None:
    """Log ``message`` once per process (the encoder is resolved before decoding and again by the writer)."""
    log.warning(message)


def check_quality(codec: str | None, ext: str, crf: int, preset: str) -> None:
    """Check that an encoder of ``codec``'s family takes ``crf`` and ``preset`` (the option table), opening nothing.

    The early form of :func:`resolve_encoder`'s checks, so that a typo fails before a model is loaded.

    Raises:
        UserError: ``crf`` outside the encoder's range, or a preset it has no equivalent for.
    """
    errors = []
    for name in _candidates(codec, ext):
        try:
            quality_options(name, crf, preset)
            return  # One encoder of the family takes them (p1..p7 suit NVENC only); resolving checks the one picked.
        except UserError as exc:
            errors.append((name, exc))
    raise next((exc for name, exc in errors if not name.endswith("_nvenc")), errors[-1][1])


def codec_family(codec: str | None, ext: str) -> str:
    """The codec (family or encoder name) a ``codec`` option means for an ``ext`` file: its default when ``None``."""
    return codec or _DEFAULT_FAMILY.get(ext.lower(), "h264")


def _candidates(codec: str | None, ext: str) -> tuple[str, ...]:
    """The encoders to try for ``codec`` (a family's, in order, or the one named) into an ``ext`` file."""
    if codec is not None and not codec.strip():
        raise OptionError("codec", ": expected an encoder name or a family (h264, hevc, av1, vp9), got ''")
    family = (codec or _DEFAULT_FAMILY.get(ext.lower(), "h264")).lower()
    return FAMILIES.get(family, (codec,))


def _checked(name: str, crf: int, preset: str, pix_fmt: str, size: tuple[int, int] | None) -> Encoder:
    """Check ``name`` can code ``pix_fmt`` at ``size`` with these options; the :class:`Encoder` or a UserError."""
    import av

    try:
        codec = av.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError or ValueError depending on the name.
        raise OptionError("codec", f"{name}: no such encoder in this FFmpeg build") from None
    if codec.type != "video":
        raise OptionError("codec", f"{name} encodes {codec.type}, not video")
    coded = coded_pix_fmt(name, pix_fmt)
    formats = [f.name for f in (codec.video_formats or [])]
    if formats and coded not in formats:
        raise OptionError("pix_fmt", f"{pix_fmt} is not supported by {name} (use one of {', '.join(formats)})")
    options = quality_options(name, crf, preset) | _QUIET.get(name, {})
    if size is not None:
        check_size(name, pix_fmt, *size)
    # Encoders without a measured size table (NVENC, any other FFmpeg name) are opened at the real size.
    probe = size if size is not None and name not in SIZE_LIMITS else _PROBE_SIZE
    at = f" at {probe[0]}x{probe[1]}" if probe != _PROBE_SIZE else ""
    reason = open_failure(name, coded, tuple(_QUIET.get(name, {}).items()), probe)
    if reason is not None:
        raise OptionError(
            "codec",
            f"{name} cannot be opened on this machine with `pix_fmt` {pix_fmt}{at} ({reason})",
            mentions=("pix_fmt",),
        )
    reason = open_failure(name, coded, tuple(sorted(options.items())), probe)
    if reason is not None:
        raise OptionError(
            "codec", f"{name} refuses `preset` {preset} or `crf` {crf} ({reason})", mentions=("preset", "crf")
        )
    return Encoder(name, options, coded)


def _check_pix_fmt(pix_fmt: str) -> None:
    import av

    try:
        av.VideoFormat(pix_fmt)
    except ValueError:
        raise OptionError(
            "pix_fmt", f"{pix_fmt!r} is not a pixel format (e.g. yuv420p, yuv444p, yuv420p10le)"
        ) from None
