"""Choosing and configuring the video encoder: NVENC where the GPU has it, every option checked before decoding.

``--codec`` takes an encoder name (``libx264``, ``h264_nvenc``...) or a family (``h264``, ``hevc``, ``av1``); a family,
and the default, resolve to the NVENC encoder when one opens on this machine (probed once per process), else to the
software encoder. ``--crf`` becomes each encoder's constant-quality setting (CRF for x264/x265/VP9/AV1, ``rc=vbr`` with
``cq`` and no bitrate cap for NVENC); an encoder without a constant-quality mode is refused rather than ignoring it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from fractions import Fraction

from inference.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_CRF = 18
# Family -> encoders to try in order: the NVENC one first, then software.
FAMILIES = {
    "h264": ("h264_nvenc", "libx264"),
    "hevc": ("hevc_nvenc", "libx265"),
    "h265": ("hevc_nvenc", "libx265"),
    "av1": ("av1_nvenc", "libsvtav1", "libaom-av1"),
    "vp9": ("libvpx-vp9",),
}
_DEFAULT_FAMILY = {".webm": "vp9"}
# Constant-quality option name and its range, per software encoder.
_CRF = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libvpx-vp9": (0, 63),
    "libvpx": (4, 63),
    "libaom-av1": (0, 63),
    "libsvtav1": (0, 63),
}
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
)  # fmt: skip
# x264's preset names on NVENC's p1 (fastest) .. p7 (best) scale, so one --preset means the same trade-off on both.
NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p1",
    "veryfast": "p2",
    "faster": "p3",
    "fast": "p4",
    "medium": "p5",
    "slow": "p6",
    "slower": "p7",
    "veryslow": "p7",
    "placebo": "p7",
}


@dataclass(frozen=True)
class Encoder:
    """A resolved encoder: its FFmpeg name and the private options that carry ``--crf`` and ``--preset``."""

    name: str
    options: dict

    @property
    def nvenc(self) -> bool:
        """Whether this is an NVIDIA hardware encoder."""
        return self.name.endswith("_nvenc")

    @property
    def x26x(self) -> bool:
        """Whether this is libx264 or libx265 (frame-threaded on every host core)."""
        return self.name in ("libx264", "libx265")


def nvenc_options(crf: int, preset: str) -> dict:
    """NVENC private options for constant quality ``crf`` (0-51) at an x264-named or ``p1``-``p7`` preset.

    ``rc=vbr`` with ``cq`` set and ``b=0`` (no target bitrate) is NVENC's constant-quality mode.
    """
    if not 0 <= crf <= 51:
        raise UserError(f"--crf must be in [0, 51] for NVENC encoders, got {crf}")
    nv_preset = preset if preset in {f"p{i}" for i in range(1, 8)} else NVENC_PRESETS.get(preset)
    if nv_preset is None:
        raise UserError(f"--preset {preset!r} is not an NVENC preset; use p1..p7 or one of {', '.join(X264_PRESETS)}")
    return {"rc": "vbr", "cq": str(crf), "b": "0", "preset": nv_preset}


def software_options(name: str, crf: int, preset: str) -> dict:
    """Private options of a software encoder for quality ``crf`` and ``preset``.

    Raises:
        UserError: ``crf`` out of the encoder's range, an encoder without constant quality given a non-default
            ``crf``, or a non-default ``preset`` for an encoder without presets.
    """
    opts: dict = {}
    if name in _CRF:
        lo, hi = _CRF[name]
        if not lo <= crf <= hi:
            raise UserError(f"--crf must be in [{lo}, {hi}] for {name}, got {crf}")
        opts["crf"] = str(crf)
    elif crf != DEFAULT_CRF:
        raise UserError(f"--crf has no effect with --codec {name} (no constant-quality mode); leave it out")
    if name in ("libx264", "libx265"):
        if preset not in X264_PRESETS:
            raise UserError(f"--preset {preset!r} is not a {name} preset; use one of {', '.join(X264_PRESETS)}")
        opts["preset"] = preset
    elif name.startswith("libvpx"):
        opts["b"] = "0"  # Constant quality, not constrained quality.
    elif preset != "medium":
        raise UserError(f"--preset applies to libx264, libx265 and NVENC encoders, not --codec {name}")
    return opts


@functools.cache
def opens(name: str, pix_fmt: str = "yuv420p", options: tuple = ()) -> str | None:
    """Open encoder ``name`` once on a small frame: ``None`` if it works, else FFmpeg's one-line reason."""
    import av

    try:
        ctx = av.codec.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.options = dict(options)
        ctx.open()
    except Exception as exc:  # noqa: BLE001 - every failure means "not usable here" (no GPU, no driver, bad option).
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def resolve_encoder(codec: str | None, ext: str, crf: int, preset: str, pix_fmt: str) -> Encoder:
    """Pick and check the encoder for ``--codec`` (a name, a family or ``None``) before anything is decoded.

    Args:
        codec: An FFmpeg encoder name, a family (h264, hevc, av1, vp9) or ``None`` for the container's default.
        ext: The output's extension (``.webm`` defaults to VP9, everything else to H.264).
        crf: Constant quality (lower is better).
        preset: Speed preset (x264 names; NVENC also takes p1..p7).
        pix_fmt: Output pixel format.

    Returns:
        The :class:`Encoder`, already opened once with these options.

    Raises:
        UserError: Unknown codec or pixel format, a pixel format the encoder cannot take, a bad preset or crf.
    """
    family = (codec or _DEFAULT_FAMILY.get(ext.lower(), "h264")).lower()
    candidates = FAMILIES.get(family, (codec,))
    _check_pix_fmt(pix_fmt)
    for name in candidates:
        if name.endswith("_nvenc") and len(candidates) > 1 and opens(name) is not None:
            continue  # No NVENC here: the software encoder of the family follows.
        return _checked(name, crf, preset, pix_fmt)
    raise UserError(f"--codec {codec}: no encoder of this family is available")


def _checked(name: str, crf: int, preset: str, pix_fmt: str) -> Encoder:
    import av

    try:
        codec = av.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError or ValueError depending on the name.
        raise UserError(f"--codec {name}: no such encoder in this FFmpeg build") from None
    if codec.type != "video":
        raise UserError(f"--codec {name} is a {codec.type} encoder, not a video one")
    formats = [f.name for f in (codec.video_formats or [])]
    if formats and pix_fmt not in formats:
        raise UserError(f"--pix-fmt {pix_fmt} is not supported by {name} (use one of {', '.join(formats)})")
    options = nvenc_options(crf, preset) if name.endswith("_nvenc") else software_options(name, crf, preset)
    reason = opens(name, pix_fmt)
    if reason is not None:
        raise UserError(f"--codec {name} cannot be opened on this machine with --pix-fmt {pix_fmt} ({reason})")
    reason = opens(name, pix_fmt, tuple(sorted(options.items())))
    if reason is not None:
        raise UserError(f"--codec {name} refuses --preset {preset} or --crf {crf} ({reason})")
    return Encoder(name, options)


def _check_pix_fmt(pix_fmt: str) -> None:
    import av

    try:
        av.VideoFormat(pix_fmt)
    except ValueError:
        raise UserError(f"--pix-fmt {pix_fmt!r} is not a pixel format (e.g. yuv420p, yuv444p, yuv420p10le)") from None
