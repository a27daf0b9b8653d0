"""Which part of an input to read and at what size: every trim and size option's default, range and help, once.

:class:`TrimOptions` is checked when made (:class:`~inference.core.errors.OptionError` naming the field);
:func:`inference.io.readers.open_source` and :func:`inference.app.convert.stylize_file` take one, and
``stylize-video`` builds its flags from the fields' specs (:mod:`inference.app.cli`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from inference.core.errors import OptionError
from inference.core.option_fields import check_fields, option, with_fields
from inference.io.limits import MAX_FPS, MAX_SECONDS, MIN_FPS, frame_size_problem
from inference.io.media import Resize


@dataclass(frozen=True)
class TrimOptions:
    """The part of an input to read and the size of its frames.

    Attributes:
        start: Seconds to skip, in [0, :data:`~inference.io.limits.MAX_SECONDS`] (the output then starts at 0);
            ``None``: from the start, keeping the input's timestamps.
        duration: Seconds to keep, in (0, MAX_SECONDS], from ``start`` or else from the stream's first timestamp;
            ``None``: to the end.
        size: Output ``(width, height)`` in display orientation (each >= 1, within FFmpeg's image size limit).
        max_side: Shrink (never enlarge) so the longest side is at most this many pixels (>= 2); ``size`` wins.
        fps: Frame rate of image-sequence inputs, in [MIN_FPS, MAX_FPS] (videos keep their own timing); ``None``: 25.
    """

    start: float | None = option(None, "skip this many seconds", kind=float, low=0, high=MAX_SECONDS, unit="seconds",
                                 metavar="SEC")  # fmt: skip
    duration: float | None = option(
        None, "stylize only this many seconds", kind=float, low=0, high=MAX_SECONDS, low_open=True, unit="seconds",
        metavar="SEC",
    )  # fmt: skip
    size: tuple[int, int] | None = option(None, "resize to exactly WxH (display)", metavar="WxH")
    max_side: int | None = option(None, "shrink so the long side is <= PX", kind=int, low=2, metavar="PX")
    fps: float | None = option(None, "frame rate for image/folder inputs, default 25", kind=float, low=MIN_FPS,
                               high=MAX_FPS)  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)
        if self.size is not None:
            problem = _size_problem(self.size)
            if problem is not None:
                raise OptionError("size", problem)
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    def resize(self, even: bool = False) -> Resize:
        """The :class:`~inference.io.media.Resize` rules for these options (``even``: the encoder needs even sizes)."""
        return Resize(self.size, self.max_side, even)

    @classmethod
    def build(cls, options: TrimOptions | None = None, **fields: Any) -> TrimOptions:
        """``options`` (default: all defaults) with ``fields`` replaced, checked again.

        Raises:
            TypeError: ``options`` that are no :class:`TrimOptions`, or a field name it does not have.
            OptionError: A bad value.
        """
        return with_fields(cls, options, fields)


def size_problem(width: int, height: int) -> str | None:
    """Why ``width`` x ``height`` cannot be an output size (a phrase such as ``"must be at least 1x1"``), or ``None``.
    The one size check of :class:`TrimOptions` and of the command line's ``WxH`` parser."""
    if min(width, height) < 1:
        return "must be at least 1x1"
    problem = frame_size_problem(width, height)
    return None if problem is None else f"must be smaller ({problem})"


def _size_problem(size: Any) -> str | None:
    """Why ``size`` is not a ``(width, height)`` FFmpeg can hold, or ``None``."""
    ok = isinstance(size, tuple | list) and len(size) == 2
    if not ok or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
        return f"must be (width, height) integers, got {size!r}"
    problem = size_problem(int(size[0]), int(size[1]))
    return None if problem is None else f"{problem}, got {size[0]}x{size[1]}"
