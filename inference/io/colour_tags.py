"""Colour tags of video streams: read them from decoded frames, resolve untagged streams, write them on encoders.

Values are FFmpeg's enums (``AVColorSpace``, ``AVColorPrimaries``, ``AVColorTransferCharacteristic``), as PyAV's
``VideoFrame.colorspace``, ``color_primaries`` and ``color_trc`` return them. Untagged streams are resolved the way
FFmpeg and players do: BT.709 for HD (more than 576 lines or 1024 columns), BT.601 (SMPTE 170M) for SD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.core.colour import YuvSpec

UNSPECIFIED = 2
# AVColorSpace -> the matrix of inference.core.colour; 5 (BT.470BG) and 6 (SMPTE 170M) are both BT.601.
_MATRIX_NAMES = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
# The tags written for a resolved matrix when the input named none: (colorspace, primaries, transfer).
_DEFAULT_TAGS = {"bt709": (1, 1, 1), "bt601": (6, 6, 6), "bt2020": (9, 9, 14)}
# swscale's names for the matrices (PyAV's ``Colorspace``): the RGB path converts with the same matrix it tags.
SWS_COLORSPACE = {"bt709": "itu709", "bt601": "smpte170m", "bt2020": "bt2020"}
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}
# Codecs whose 4:2:0 chroma is sited left by default (co-sited with the even luma columns): H.264, HEVC and the
# MPEG family, decoders and encoders alike. PyAV does not expose a frame's chroma location, so it follows the codec.
_LEFT_SITED = ("h264", "hevc", "libx264", "libx265", "mpeg2", "mpeg1", "mpeg4", "vvc", "libvvenc")


def chroma_left_sited(codec_name: str) -> bool:
    """Whether a stream of decoder or encoder ``codec_name`` (``h264``, ``h264_nvenc``, ``libx265``...) sites 4:2:0
    chroma left (see :class:`inference.core.colour.YuvSpec`)."""
    return codec_name.lower().startswith(_LEFT_SITED)


@dataclass(frozen=True)
class ColourTags:
    """A stream's colour description.

    Attributes:
        matrix: ``AVColorSpace`` (1 BT.709, 5/6 BT.601, 9 BT.2020, 2 unspecified).
        primaries: ``AVColorPrimaries`` (2 unspecified).
        transfer: ``AVColorTransferCharacteristic`` (2 unspecified).
        full_range: ``True`` for full-range ("JPEG") samples, ``False`` for limited ("MPEG") range.
    """

    matrix: int = UNSPECIFIED
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    full_range: bool = False

    @classmethod
    def from_frame(cls, frame) -> ColourTags:
        """Read the tags of a decoded PyAV ``VideoFrame`` (yuvj formats are full range whatever their tag says)."""
        full = int(frame.color_range or 0) == 2 or frame.format.name in _FULL_RANGE_FORMATS
        return cls(int(frame.colorspace or 2), int(frame.color_primaries or 2), int(frame.color_trc or 2), full)

    def matrix_name(self, width: int, height: int) -> str:
        """``"bt601"``, ``"bt709"`` or ``"bt2020"``: the tagged matrix, or the default for an untagged stream."""
        if self.matrix in _MATRIX_NAMES:
            return _MATRIX_NAMES[self.matrix]
        from inference.core.colour import YuvSpec

        return YuvSpec.default_for(width, height).matrix

    def yuv_spec(self, width: int, height: int, chroma_left: bool = False) -> YuvSpec:
        """The :class:`~inference.core.colour.YuvSpec` decoding this stream's samples (``chroma_left``: see
        :func:`chroma_left_sited`)."""
        from inference.core.colour import YuvSpec

        return YuvSpec(self.matrix_name(width, height), self.full_range, chroma_left)

    def for_output(self, width: int, height: int) -> ColourTags:
        """The tags of an encoded copy (limited range): the input's where it has them, else the resolved defaults."""
        name = self.matrix_name(width, height)
        matrix, primaries, transfer = _DEFAULT_TAGS[name]
        if self.matrix in _MATRIX_NAMES:
            matrix = self.matrix
        return ColourTags(
            matrix,
            self.primaries if self.primaries != UNSPECIFIED else primaries,
            self.transfer if self.transfer != UNSPECIFIED else transfer,
            False,
        )

    def apply(self, codec_context) -> None:
        """Write the tags on an encoder's codec context (before its first frame), so the stream carries them."""
        codec_context.colorspace = self.matrix
        codec_context.color_primaries = self.primaries
        codec_context.color_trc = self.transfer
        codec_context.color_range = 2 if self.full_range else 1
