"""The declared interface of media readers and writers, so that callers use attributes instead of probing for them.

File conversion (:mod:`inference.app.convert`) reads a :class:`Source` into a :class:`Sink`; a live run
(:mod:`inference.app.live`) reads a :class:`StreamSource` into a :class:`StreamSink`, with timestamps in seconds because
a live input has no fixed time base. Every reader and writer subclasses its protocol explicitly, so each attribute below
always exists (``None`` or ``False`` where it does not apply).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from inference.core.colour import YuvSpec
    from inference.core.stages import StageClock
    from inference.io.media import MediaInfo, SourceFrame


class Source(Protocol):
    """A file input: a video, an image, a folder of frames or a glob.

    Attributes:
        info: Stream facts (size after resizing, rate, time base, rotation, colour, expected frame count).
        planes: Frames come as ``uint8 [H * 3 / 2, W]`` I420 planes (a video opened with ``planes=True`` whose stream
            allows it; then ``info.yuv`` says how to read them), else as ``uint8 [H, W, 3]`` RGB.
        decoder: The decoder's name for the stats line (e.g. ``"h264_cuvid"``), or ``None`` for image files.
    """

    info: MediaInfo
    planes: bool
    decoder: str | None

    def frames(self, clock: StageClock | None = None) -> Iterator[SourceFrame]:
        """Yield the frames in output order, pts in ``info.time_base`` units from the trimmed start; ``clock``
        accumulates ``decode`` (and, for videos converted to RGB, ``colour``) busy time. Closes the source at the end
        for videos; call :meth:`close` in any case."""
        ...

    def truncation_warning(self) -> str | None:
        """After :meth:`frames` ran: a one-line warning when fewer frames decoded than the input announced."""
        ...

    def close(self) -> None:
        """Release the input (idempotent)."""
        ...


class Sink(Protocol):
    """A file output: a video, a GIF, a folder of frames or one image, written to the (temporary) path it was given.

    Attributes:
        frames: Frames written so far.
        yuv_spec: When not ``None``, :meth:`write_planes` takes I420 planes coded with this matrix and range (a
            yuv420p video); ``None`` for sinks that take RGB only.
    """

    frames: int
    yuv_spec: YuvSpec | None

    def write(self, array: np.ndarray, pts: int) -> None:
        """Write one ``uint8 [H, W, 3]`` RGB frame in coded orientation, pts in the source's ``info.time_base``."""
        ...

    def write_planes(self, planes: np.ndarray, pts: int) -> None:
        """Write one frame as ``uint8 [H * 3 / 2, W]`` I420 planes (only when :attr:`yuv_spec` is not ``None``)."""
        raise TypeError(f"{type(self).__name__} takes RGB frames only")

    def close(self) -> None:
        """Finish the output (flush encoders, write trailers); the file is then complete."""
        ...

    def abort(self) -> None:
        """Release what is open after a failure, without finishing the output."""
        ...


class StreamSource(Protocol):
    """A live input (camera, stream URL, or a file played at its own pace).

    Attributes:
        width, height: Frame size after resizing, in pixels (even).
        rate: The stream's nominal frame rate.
    """

    width: int
    height: int
    rate: Fraction

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ``(uint8 [H, W, 3] RGB, seconds)`` as frames arrive."""
        ...

    def interrupt(self) -> None:
        """Make :meth:`frames` end soon, from any thread, even while it waits for the next packet."""
        ...

    def close(self) -> None:
        """Release the input (after the thread reading :meth:`frames` has ended)."""
        ...


class StreamSink(Protocol):
    """A live output (a file, a stream URL or stdout).

    Attributes:
        frames: Frames written so far.
    """

    frames: int

    def write(self, array: np.ndarray, seconds: float) -> None:
        """Encode one ``uint8 [H, W, 3]`` RGB frame shown at ``seconds`` (kept strictly increasing)."""
        ...

    def close(self) -> None:
        """Flush the encoder and finish the output."""
        ...
