"""The video writer: encode RGB frames or I420 planes with PyAV, keeping pts, frame rate, rotation and colour tags.

Audio is copied from the input (:mod:`inference.io.audio`). The encoder is chosen and checked by
:mod:`inference.io.encoders` (NVENC where it opens, else libx264/libx265 frame-threaded on every host core).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.core.devices import encoder_threads, nvenc_options
from inference.core.errors import MediaError
from inference.core.stages import StageClock
from inference.io.colour_tags import SWS_COLORSPACE, chroma_left_sited
from inference.io.encode_options import EncodeOptions
from inference.io.encoders import resolve_encoder
from inference.io.media import MediaInfo
from inference.io.protocols import Sink

if TYPE_CHECKING:
    from inference.core.colour import YuvSpec

log = logging.getLogger(__name__)


def _write_error(exc: Exception, path: Path) -> MediaError:
    """The one-line error for an FFmpeg failure while writing ``path`` (returned for the caller to raise)."""
    return MediaError(f"{path}: cannot write ({str(exc).splitlines()[0]})")


class VideoSink(Sink):
    """Encode frames into a video container, keeping pts, frame rate and rotation, copying audio, tagging colour.

    Args:
        path: File to write (its extension picks the container).
        info: The source's description.
        options: Encoder settings.
        container_ext: The extension choosing the muxer, when ``path`` is a temporary name.
        clock: Accumulates ``colour back`` (swscale from RGB), ``encode`` and ``mux`` busy time.

    Raises:
        UserError: A bad ``codec``, ``preset``, ``crf`` or ``pix_fmt`` (checked before the file is opened).
        MediaError: The container cannot be written or cannot hold the codec.
    """

    def __init__(
        self,
        path: Path,
        info: MediaInfo,
        options: EncodeOptions,
        container_ext: str | None = None,
        *,
        clock: StageClock | None = None,
    ) -> None:
        import av

        self.path, self.info, self.clock = Path(path), info, clock or StageClock()
        ext = (container_ext or self.path.suffix).lower()
        self.encoder = resolve_encoder(
            options.codec, ext, options.crf, options.preset, options.pix_fmt, size=(info.width, info.height)
        )
        self.pix_fmt = options.pix_fmt  # As asked for; the stream codes it as self.encoder.pix_fmt (NVENC: p010le...).
        full = options.pix_fmt.startswith("yuvj")
        self.tags = dataclasses.replace(info.colour.for_output(*_size(info)), full_range=full)
        self.audio = None
        self.frames = 0
        try:
            self.container = av.open(str(path), mode="w", format={".mkv": "matroska", ".m4v": "mp4"}.get(ext, ext[1:]))
        except (av.error.FFmpegError, ValueError) as exc:
            raise _write_error(exc, self.path) from None
        try:
            self._add_stream(ext)
            if options.audio and info.kind == "video" and info.has_audio:
                from inference.io.audio import AudioCopier

                self.audio = AudioCopier(
                    info.path, self.container, origin=info.origin, end=info.end, trim=info.start > 0
                )
        except BaseException:
            self.abort()  # Nothing leaks when the constructor fails after av.open.
            raise
        log.info("%s: encoding with %s %s", self.path, self.encoder.name, self.encoder.options)

    def _add_stream(self, ext: str) -> None:
        import av

        info = self.info
        try:
            self.stream = self.container.add_stream(self.encoder.name, rate=info.rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(
                f"`codec` {self.encoder.name} cannot be written to {ext} files ({exc})", mentions=("codec",)
            ) from None
        self.stream.width, self.stream.height = info.width, info.height
        self.stream.pix_fmt = self.encoder.pix_fmt
        ctx = self.stream.codec_context
        if self.encoder.x26x:
            # Frame threads on every core (thread_count 0 lets x264/x265 pick); PyAV's default is slice threads.
            # The measurement behind this is in bench/results/encoder-presets-cpu.json.
            # In a multi-worker run each worker gets its share of the cores instead (inference.core.devices).
            ctx.thread_type, ctx.thread_count = "FRAME", encoder_threads()
        elif not self.encoder.nvenc:
            ctx.thread_type = "AUTO"
        # Keep the input's time base so that every pts (variable frame rate included) is written unchanged.
        self.stream.time_base = info.time_base
        ctx.time_base = info.time_base
        if not av.VideoFormat(self.pix_fmt).is_rgb:
            self.tags.apply(ctx)
        # NVENC on the Stylizer's GPU ("gpu" defaults to the first one).
        self.stream.options = dict(self.encoder.options) | (nvenc_options() if self.encoder.nvenc else {})
        if info.rotation:
            self.stream.set_display_rotation(info.rotation)

    @property
    def yuv_spec(self) -> YuvSpec | None:
        """The matrix and range of planes :meth:`write_planes` takes, or ``None`` if the pixel format needs RGB."""
        from inference.core.colour import YuvSpec

        if self.pix_fmt != "yuv420p" or self.encoder.pix_fmt != "yuv420p":
            return None
        left = chroma_left_sited(self.encoder.name)  # decoders of H.264/HEVC read 4:2:0 chroma as left-sited
        return YuvSpec(self.tags.matrix_name(*_size(self.info)), full_range=False, chroma_left=left)

    def write(self, array: np.ndarray, pts: int) -> None:
        """Encode one ``uint8 [H, W, 3]`` RGB frame with presentation timestamp ``pts`` (in the source time base).

        swscale converts it to the output pixel format with the matrix and range the stream is tagged with.
        """
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        with self.clock.time("colour back"):
            if not av.VideoFormat(self.pix_fmt).is_rgb:
                frame = frame.reformat(
                    format=self.encoder.pix_fmt,
                    dst_colorspace=SWS_COLORSPACE[self.tags.matrix_name(*_size(self.info))],
                    dst_color_range="JPEG" if self.tags.full_range else "MPEG",
                )
        self._encode(frame, pts)

    def write_planes(self, planes: np.ndarray, pts: int) -> None:
        """Encode one frame given as ``uint8 [H * 3 / 2, W]`` I420 planes in :attr:`yuv_spec` (no swscale pass)."""
        import av

        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.colorspace, frame.color_range = self.tags.matrix, 1
        self._encode(frame, pts)

    def _encode(self, frame, pts: int) -> None:
        import av

        frame.pts = pts
        frame.time_base = self.info.time_base
        try:
            with self.clock.time("encode"):
                packets = self.stream.encode(frame)
            self._mux(packets)
        except av.error.FFmpegError as exc:
            raise _write_error(exc, self.path) from None
        self.frames += 1

    def _mux(self, packets) -> None:
        with self.clock.time("mux"):
            for packet in packets:
                if self.audio is not None and packet.dts is not None:
                    self.audio.copy_until(float(packet.dts * packet.time_base))
                self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and finalise the container."""
        import av

        try:
            with self.clock.time("encode"):
                packets = self.stream.encode()
            self._mux(packets)
            with self.clock.time("mux"):
                if self.audio is not None:
                    self.audio.copy_until()
                self.container.close()
        except av.error.FFmpegError as exc:
            raise _write_error(exc, self.path) from None
        finally:
            if self.audio is not None:
                self.audio.close()

    def abort(self) -> None:
        """Release files after an error (the temporary output is deleted by the caller)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the original error matters, not the cleanup's.
            pass
        if self.audio is not None:
            self.audio.close()


def _size(info: MediaInfo) -> tuple[int, int]:
    """The input's size (which decides the matrix of an untagged stream), or the output's for RGB sources."""
    return info.input_size if info.input_size[0] > 0 else (info.width, info.height)
