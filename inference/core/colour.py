"""Colour on the device: BT.601 luma, ``uint8`` samples to float and back (one rounding rule), YUV planes to RGB and
back (the stream's matrix and range), strength blending and colour preservation.

Everything works on tensors on whatever device the frames are on (RGB as float ``[B, 3, H, W]`` in [0, 1]) and never
modifies its inputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

# ITU-R BT.601 luma weights (full-range JPEG YCbCr): luminance is what "style" mostly lives in, chroma is the
# content's own colour. The one definition in the project; training's luminance-aware temporal loss uses it too.
BT601_LUMA = (0.299, 0.587, 0.114)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB frames, the one luma of the project.

    Args:
        rgb: ``[B, 3, H, W]`` floats in any range (luma keeps the unit: [0, 1] in gives [0, 1] out).

    Returns:
        ``[B, 1, H, W]`` in ``rgb``'s dtype.
    """
    r, g, b = rgb.unbind(1)
    return (BT601_LUMA[0] * r + BT601_LUMA[1] * g + BT601_LUMA[2] * b).unsqueeze(1)


def to_float(frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``uint8`` samples in [0, 255] to ``dtype`` in [0, 1] (``k / 255``); any shape, a new tensor.

    Raises:
        TypeError: ``frames`` is not ``uint8`` (a float input would be scaled twice).
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 samples, got {frames.dtype}")
    return frames.to(dtype).div_(255.0)


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] to ``uint8`` in [0, 255]; any shape, a new tensor.

    The project's one rounding rule: scale by 255 in ``frames``' own dtype, clamp to [0, 255] (out-of-range values
    saturate), round to nearest with ties to even (:func:`torch.round`).
    """
    return frames.mul(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8)


def blend(styled: torch.Tensor, original: torch.Tensor, strength: float) -> torch.Tensor:
    """Mix the stylized frames with the originals.

    Args:
        styled: ``[B, 3, H, W]`` in [0, 1].
        original: ``[B, 3, H, W]`` in [0, 1], same shape.
        strength: 1 keeps ``styled``, 0 gives back ``original``.

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    if strength >= 1.0:
        return styled
    return torch.lerp(original, styled, float(strength))


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` in [0, 1] to full-range YCbCr ``[B, 3, H, W]`` (Y in [0, 1], Cb/Cr centred on 0.5)."""
    r, g, b = rgb.unbind(1)
    y = luma(rgb).squeeze(1)
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.stack((y, cb, cr), 1)


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`; the result is not clamped."""
    y, cb, cr = ycc.unbind(1)
    r = y + 1.403 * (cr - 0.5)
    b = y + 1.773 * (cb - 0.5)
    g = (y - BT601_LUMA[0] * r - BT601_LUMA[2] * b) / BT601_LUMA[1]
    return torch.stack((r, g, b), 1)


def preserve_color(styled: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Keep the original's chroma and take only the luminance from the stylized frame (Gatys et al. 2016, sec. 2.2).

    Args:
        styled: ``[B, 3, H, W]`` in [0, 1].
        original: ``[B, 3, H, W]`` in [0, 1], same shape.

    Returns:
        ``[B, 3, H, W]`` in [0, 1].
    """
    y = luma(styled)
    ycc = rgb_to_ycbcr(original)
    return ycbcr_to_rgb(torch.cat((y, ycc[:, 1:]), 1)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------- YUV planes
# Luma weights (Kr, Kb) of the three matrices video streams use; Kg = 1 - Kr - Kb.
_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}


@dataclass(frozen=True)
class YuvSpec:
    """How a stream's 8-bit YUV samples encode RGB.

    Attributes:
        matrix: ``"bt601"``, ``"bt709"`` or ``"bt2020"`` (non-constant luminance).
        full_range: ``True`` for full-range ("JPEG", 0-255) samples, ``False`` for limited range (Y 16-235, chroma
            16-240), which is what almost every video uses.
        chroma_left: 4:2:0 chroma sited *left*: each chroma sample sits on an even luma column (and between two
            rows), the default of H.264, HEVC and MPEG-2/4 (``AVCHROMA_LOC_LEFT``). ``False``: centred between four
            luma samples (JPEG, ``AVCHROMA_LOC_CENTER``). Assuming centre siting for a left-sited stream shifts the
            chroma by a quarter chroma sample (half a luma pixel) against the luma.
    """

    matrix: str = "bt709"
    full_range: bool = False
    chroma_left: bool = False

    def __post_init__(self) -> None:
        if self.matrix not in _MATRICES:
            raise ValueError(f"unknown YUV matrix {self.matrix!r}; use one of {', '.join(_MATRICES)}")

    @classmethod
    def default_for(cls, width: int, height: int, full_range: bool = False) -> YuvSpec:
        """The matrix players assume for an untagged stream: BT.709 for HD (more than 576 lines or 1024 columns),
        BT.601 for SD, as FFmpeg and common players do."""
        hd = height > 576 or width > 1024
        return cls("bt709" if hd else "bt601", full_range)

    def _affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A [3, 3], b [3])`` with ``rgb = A @ yuv8 + b`` for 8-bit samples (Y, Cb, Cr) and RGB in [0, 1]."""
        kr, kb = _MATRICES[self.matrix]
        kg = 1.0 - kr - kb
        y_scale, c_scale = (1 / 255, 1 / 255) if self.full_range else (1 / 219, 1 / 224)
        y_off = 0.0 if self.full_range else 16.0
        # R = Y' + 2(1-Kr) Pr; B = Y' + 2(1-Kb) Pb; G = (Y' - Kr R - Kb B) / Kg.
        m = torch.tensor(
            [
                [1.0, 0.0, 2 * (1 - kr)],
                [1.0, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
                [1.0, 2 * (1 - kb), 0.0],
            ],
            dtype=torch.float64,
        )
        a = m * torch.tensor([y_scale, c_scale, c_scale], dtype=torch.float64)
        b = -(a @ torch.tensor([y_off, 128.0, 128.0], dtype=torch.float64))
        return a.float(), b.float()


@functools.lru_cache(maxsize=64)
def _device_affine(spec: YuvSpec, device: torch.device, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(matrix, offset)`` of ``spec`` on ``device``, made once per (spec, device): a copy from pageable host memory
    on every batch would make the host wait for the device each time (four times per batch, in and out)."""
    a, off = spec._affine()
    if inverse:
        a = torch.linalg.inv(a.double()).float()
    return a.to(device), off.to(device).view(1, 3, 1, 1)


def _upsample_chroma(uv: torch.Tensor, left: bool) -> torch.Tensor:
    """``[B, 2, h, w]`` chroma -> ``[B, 2, 2h, 2w]``.

    Centre siting: repetition (swscale's unscaled conversion). Left siting, interpolated as swscale does for a
    left-sited stream: vertically the samples lie between rows ``2i`` and ``2i + 1``, so those rows take 3/4 of
    sample ``i`` and 1/4 of its neighbour above or below; horizontally the even columns are the samples themselves
    and the odd ones lie halfway to the next (edges repeated).
    """
    if not left:
        return uv.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    above = torch.cat((uv[:, :, :1], uv[:, :, :-1]), dim=2)
    below = torch.cat((uv[:, :, 1:], uv[:, :, -1:]), dim=2)
    rows = torch.stack((0.75 * uv + 0.25 * above, 0.75 * uv + 0.25 * below), dim=3).flatten(2, 3)
    nxt = torch.cat((rows[..., 1:], rows[..., -1:]), dim=3)
    return torch.stack((rows, 0.5 * (rows + nxt)), dim=4).flatten(3)


def _downsample_chroma(uv: torch.Tensor, left: bool) -> torch.Tensor:
    """``[B, 2, H, W]`` chroma -> ``[B, 2, H/2, W/2]``: the mean of each 2x2 block for centre siting; for left
    siting the mean of two rows and a [1, 2, 1] / 4 filter centred on each even column (the edge repeated)."""
    if not left:
        return torch.nn.functional.avg_pool2d(uv, 2)
    rows = 0.5 * (uv[:, :, 0::2] + uv[:, :, 1::2])
    even, odd = rows[..., 0::2], rows[..., 1::2]
    before = torch.cat((even[..., :1], odd[..., :-1]), dim=3)  # column 2j - 1 (column 0 repeated at the edge)
    return 0.25 * before + 0.5 * even + 0.25 * odd


def i420_to_rgb(planes: torch.Tensor, spec: YuvSpec, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Convert I420 (planar YUV 4:2:0) frames to RGB on whatever device they are on.

    Args:
        planes: ``uint8 [B, H * 3 / 2, W]``: the Y plane (``H`` rows), then U and V (``H/2 x W/2`` each), packed as
            FFmpeg's ``yuv420p`` (what PyAV's ``VideoFrame.to_ndarray()`` returns). ``H`` and ``W`` are even.
        spec: The stream's matrix and range.
        dtype: Floating dtype of the result.

    Returns:
        ``[B, 3, H, W]`` RGB in [0, 1] (clamped). Chroma is upsampled where ``spec`` says it is sited: by repetition
        for centre siting (as swscale's unscaled conversion does, so that a round trip through :func:`rgb_to_i420`
        returns the same chroma samples), and interpolated between columns for left siting (see
        :func:`_upsample_chroma`).
    """
    b, rows, w = planes.shape
    h = rows * 2 // 3
    y = planes[:, :h].unsqueeze(1).to(torch.float32)
    uv = _upsample_chroma(planes[:, h:].reshape(b, 2, h // 2, w // 2).to(torch.float32), spec.chroma_left)
    yuv = torch.cat((y, uv), 1)
    a, off = _device_affine(spec, yuv.device, inverse=False)
    rgb = torch.einsum("ij,bjhw->bihw", a, yuv) + off
    return rgb.clamp_(0.0, 1.0).to(dtype)


def rgb_to_i420(rgb: torch.Tensor, spec: YuvSpec) -> torch.Tensor:
    """Convert RGB frames to I420 planes on whatever device they are on (the inverse of :func:`i420_to_rgb`).

    Args:
        rgb: ``[B, 3, H, W]`` in [0, 1] (any float dtype), ``H`` and ``W`` even.
        spec: The output stream's matrix and range.

    Returns:
        ``uint8 [B, H * 3 / 2, W]`` in FFmpeg's ``yuv420p`` layout; chroma is the mean of each 2x2 block for centre
        siting, and filtered around each even column for left siting (see :func:`_downsample_chroma`).
    """
    b, _, h, w = rgb.shape
    inv, off = _device_affine(spec, rgb.device, inverse=True)
    yuv = torch.einsum("ij,bjhw->bihw", inv, rgb.to(torch.float32) - off)
    y = yuv[:, 0]
    uv = _downsample_chroma(yuv[:, 1:], spec.chroma_left)
    out = torch.cat((y.reshape(b, -1), uv.reshape(b, -1)), 1)
    return out.round_().clamp_(0, 255).to(torch.uint8).view(b, h * 3 // 2, w)
