"""Encoder settings and their one table of ranges, defaults and preset equivalents, shared by the CLI and the checks.

``--crf`` is each encoder's constant-quality scale: :data:`CRF_RANGES` holds the range per encoder, and both the
``--help`` text (:func:`crf_help`) and the check (:func:`quality_options`) read it. ``--preset`` takes x264's names
everywhere; :data:`PRESETS` maps each name onto the encoder's own speed setting (NVENC p1..p7, libvpx
``deadline``/``cpu-used``, SVT-AV1 and libaom presets), and an encoder without an equivalent refuses a non-default
preset rather than ignoring it. No codec is opened here: :mod:`inference.io.encoders` resolves and probes encoders.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.core.errors import OptionError
from inference.core.option_fields import check_fields, option
from inference.io.limits import MAX_GIF_SIDE, MIN_GIF_FPS

DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
DEFAULT_PIX_FMT = "yuv420p"

# Constant-quality range per encoder (inclusive). NVENC's cq is 1-51 (1-63 for AV1): cq=0 means "automatic" there,
# so --crf 0 becomes cq 1, its best constant quality.
CRF_RANGES = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "h264_nvenc": (0, 51),
    "hevc_nvenc": (0, 51),
    "libvpx-vp9": (0, 63),
    "libaom-av1": (0, 63),
    "libsvtav1": (0, 63),
    "av1_nvenc": (0, 63),
    "libvpx": (4, 63),
}
CRF_BOUNDS = (min(lo for lo, _ in CRF_RANGES.values()), max(hi for _, hi in CRF_RANGES.values()))

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
)  # fmt: skip
NVENC_NATIVE = tuple(f"p{i}" for i in range(1, 8))


def _table(values: tuple) -> dict[str, dict[str, str]]:
    """One option dict per x264 preset name, from ``values`` (one per name, fastest first)."""
    return dict(zip(X264_PRESETS, values, strict=True))


# x264's preset names on each encoder's own speed scale, fastest first, so one --preset means the same trade-off
# everywhere. For libvpx (good deadline, cpu-used 1) and SVT-AV1 (preset 8) medium gives FFmpeg's own defaults.
_VPX = tuple({"deadline": d, "cpu-used": str(c)} for d, c in (
    ("realtime", 8), ("good", 5), ("good", 4), ("good", 3), ("good", 2),
    ("good", 1), ("good", 0), ("good", 0), ("best", 0), ("best", 0),
))  # fmt: skip
PRESETS: dict[str, dict[str, dict[str, str]]] = {
    "libx264": _table(tuple({"preset": p} for p in X264_PRESETS)),
    "libx265": _table(tuple({"preset": p} for p in X264_PRESETS)),
    "nvenc": _table(tuple({"preset": p} for p in ("p1", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p7", "p7"))),
    "libvpx-vp9": _table(_VPX),
    "libvpx": _table(_VPX),
    "libsvtav1": _table(tuple({"preset": str(p)} for p in (12, 11, 10, 9, 8, 8, 6, 4, 2, 1))),
    "libaom-av1": _table(tuple({"cpu-used": str(p)} for p in (8, 7, 6, 5, 4, 3, 2, 1, 0, 0))),
}


def crf_help() -> str:
    """The ``crf`` help text, built from :data:`CRF_RANGES`."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, bounds in CRF_RANGES.items():
        groups.setdefault(bounds, []).append(name)
    ranges = "; ".join(f"{lo}-{hi} for {', '.join(names)}" for (lo, hi), names in groups.items())
    return f"encoder quality, lower is better: {ranges}; NVENC's cq starts at 1, so 0 gives cq 1"


def preset_help() -> str:
    """The ``preset`` help text: the x264 names and what each encoder makes of them."""
    vp9, svt = PRESETS["libvpx-vp9"], PRESETS["libsvtav1"]
    return (
        f"speed preset, x264 names ({', '.join(X264_PRESETS)}), mapped onto each "
        f"encoder's scale: NVENC p1..p7 (medium = {PRESETS['nvenc']['medium']['preset']}; p1..p7 also accepted), "
        f"libvpx deadline/cpu-used (ultrafast = realtime/{vp9['ultrafast']['cpu-used']}, medium = good/"
        f"{vp9['medium']['cpu-used']}, placebo = best/0), SVT-AV1 preset {svt['ultrafast']['preset']}.."
        f"{svt['placebo']['preset']} (medium = {svt['medium']['preset']}), libaom cpu-used; other encoders refuse "
        "a preset"
    )


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings; each field's default, range and help is here once (checked when made: a bad value is an
    :class:`~inference.core.errors.OptionError` naming the field; ``stylize-video`` builds its flags from them).

    Attributes:
        codec: Video encoder name or family (h264, hevc, av1, vp9); ``None``: H.264 (NVENC where it opens, else
            libx264), or VP9 for .webm. See :mod:`inference.io.encoders`.
        crf: Constant quality, lower is better, within :data:`CRF_BOUNDS` here and the encoder's range of
            :data:`CRF_RANGES` when the encoder is known (``cq`` for NVENC).
        preset: x264 speed preset name, mapped onto the encoder's own scale by :data:`PRESETS` (NVENC also takes
            ``p1``..``p7``).
        pix_fmt: Output pixel format; yuv420p (the default) plays everywhere and needs even sizes.
        gif_fps: GIF frame rate, >= :data:`~inference.io.limits.MIN_GIF_FPS` (above 50 it is capped, with a
            warning); ``None`` keeps the input's timing.
        gif_width: GIF width in pixels, in [1, :data:`~inference.io.limits.MAX_GIF_SIDE`] (``None`` keeps the size);
            the height follows the aspect ratio.
        audio: Copy the input's audio streams into video outputs.
    """

    codec: str | None = option(
        None,
        "video encoder: a family (h264, hevc, av1, vp9: NVENC where the GPU has it, else libx264/libx265/libsvtav1/"
        "libvpx-vp9) or an FFmpeg encoder name (default h264; vp9 for .webm)",
    )
    crf: int = option(DEFAULT_CRF, crf_help(), kind=int, low=CRF_BOUNDS[0], high=CRF_BOUNDS[1])
    preset: str = option(DEFAULT_PRESET, preset_help())
    pix_fmt: str = option(
        DEFAULT_PIX_FMT,
        "pixel format (plays everywhere; odd sizes lose their last row/column; yuv444p keeps every pixel)",
    )
    gif_fps: float | None = option(
        None, "GIF frame rate, up to 50; default: the input's timing, capped at 50", kind=float, low=MIN_GIF_FPS
    )
    gif_width: int | None = option(
        None, "GIF width in pixels; default: the frame width", kind=int, low=1, high=MAX_GIF_SIDE
    )
    audio: bool = option(True, "copy the input's audio")

    def __post_init__(self) -> None:
        check_fields(self)


def _family(name: str) -> str:
    return "nvenc" if name.endswith("_nvenc") else name


def quality_options(name: str, crf: int, preset: str) -> dict[str, str]:
    """The private options that carry ``crf`` and ``preset`` to encoder ``name``.

    Args:
        name: FFmpeg encoder name (``libx264``, ``av1_nvenc``...).
        crf: Constant quality in the encoder's :data:`CRF_RANGES` range.
        preset: An x264 preset name (NVENC also takes ``p1``..``p7``).

    Raises:
        OptionError: ``crf`` outside the encoder's range, a non-default ``crf`` for an encoder without constant
            quality, an unknown preset, or a non-default preset for an encoder without speed settings.
    """
    opts = dict(_crf_options(name, crf))
    table = PRESETS.get(_family(name))
    if table is None:
        if preset != DEFAULT_PRESET:
            known = ", ".join(n for n in PRESETS if n != "nvenc")
            raise OptionError(
                "preset", f"has no equivalent for `codec` {name} (it applies to {known} and NVENC)", mentions=("codec",)
            )
        return opts
    if name.endswith("_nvenc") and preset in NVENC_NATIVE:
        return opts | {"preset": preset}
    if preset not in table:
        extra = "p1..p7 or " if name.endswith("_nvenc") else ""
        raise OptionError("preset", f"{preset!r} is not a {name} preset; use {extra}one of {', '.join(X264_PRESETS)}")
    return opts | table[preset]


def _crf_options(name: str, crf: int) -> dict[str, str]:
    if name not in CRF_RANGES:
        if crf != DEFAULT_CRF:
            raise OptionError(
                "crf",
                f"has no effect with `codec` {name} (no constant-quality mode); leave it out",
                mentions=("codec",),
            )
        return {}
    lo, hi = CRF_RANGES[name]
    if isinstance(crf, bool) or not isinstance(crf, int) or not lo <= crf <= hi:
        raise OptionError("crf", f"must be in [{lo}, {hi}] for {name}, got {crf!r}")
    if name.endswith("_nvenc"):
        # rc=vbr with cq and no target bitrate is NVENC's constant quality; cq 0 would mean "automatic".
        return {"rc": "vbr", "cq": str(max(crf, 1)), "b": "0"}
    if name.startswith("libvpx"):
        return {"crf": str(crf), "b": "0"}  # b=0: constant quality, not constrained quality.
    return {"crf": str(crf)}
