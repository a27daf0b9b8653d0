"""The video writer: encode frames into a container with PyAV, keeping pts, frame rate and rotation; audio copied."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.errors import MediaError
from inference.io.media import MediaInfo
from inference.io.writers import EncodeOptions

_DEFAULT_CODECS = {".webm": "libvpx-vp9"}


def _check_av(exc: Exception, path: Path) -> MediaError:
    return MediaError(f"{path}: cannot write ({str(exc).splitlines()[0]})")


class VideoSink:
    """Encode frames into a video container, keeping pts, frame rate and rotation, and copying audio.

    Args:
        path: File to write (its extension picks the container).
        info: The source's description.
        options: Encoder settings.
        container_ext: The extension choosing the muxer, when ``path`` is a temporary name.
    """

    def __init__(self, path: Path, info: MediaInfo, options: EncodeOptions, container_ext: str | None = None) -> None:
        import av

        self.path, self.info = Path(path), info
        ext = (container_ext or self.path.suffix).lower()
        fmt = {".mkv": "matroska", ".m4v": "mp4"}.get(ext, ext.lstrip("."))
        codec = options.codec or _DEFAULT_CODECS.get(ext, "libx264")
        try:
            self.container = av.open(str(path), mode="w", format=fmt)
            self.stream = self.container.add_stream(codec, rate=info.rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"{path}: cannot use codec {codec!r} for {ext} ({exc})") from None
        self.stream.width, self.stream.height = info.width, info.height
        self.stream.pix_fmt = options.pix_fmt
        # PyAV defaults encoders to slice threads; frame threads let x264 use every core (the encoder, not the
        # network, limited end-to-end speed on an H100 at 640x360).
        self.stream.codec_context.thread_type = "AUTO"
        # Keep the input's time base so that every pts (variable frame rate included) is written unchanged.
        self.stream.time_base = info.time_base
        self.stream.codec_context.time_base = info.time_base
        opts = {}
        if codec in ("libx264", "libx265", "libvpx-vp9", "libvpx", "libaom-av1", "libsvtav1"):
            opts["crf"] = str(options.crf)
        if codec in ("libx264", "libx265"):
            opts["preset"] = options.preset
        if codec.startswith("libvpx"):
            opts["b"] = "0"  # Constant quality mode.
        self.stream.options = opts
        if info.rotation:
            self.stream.set_display_rotation(info.rotation)
        self.audio = None
        if options.audio and info.kind == "video" and info.has_audio:
            from inference.io.audio import AudioCopier

            self.audio = AudioCopier(info.path, self.container, origin=info.origin, end=info.end, trim=info.start > 0)
        self.frames = 0

    def write(self, array: np.ndarray, pts: int) -> None:
        """Encode one ``uint8 [H, W, 3]`` RGB frame with presentation timestamp ``pts`` (in the source time base)."""
        import av

        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = pts
        frame.time_base = self.info.time_base
        try:
            self._mux(self.stream.encode(frame))
        except av.error.FFmpegError as exc:
            raise _check_av(exc, self.path) from None
        self.frames += 1

    def _mux(self, packets) -> None:
        for packet in packets:
            if self.audio is not None and packet.dts is not None:
                self.audio.copy_until(float(packet.dts * packet.time_base))
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and finalise the container."""
        import av

        try:
            self._mux(self.stream.encode())
            if self.audio is not None:
                self.audio.copy_until()
            self.container.close()
        except av.error.FFmpegError as exc:
            raise _check_av(exc, self.path) from None
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
