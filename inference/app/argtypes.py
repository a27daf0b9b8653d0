"""``argparse`` types that check a value's range at parse time and name the allowed range in the message.

Each factory returns a callable for ``add_argument(type=...)``. It raises :class:`argparse.ArgumentTypeError`, which
argparse reports as ``argument --opt: <message>``, so a bad value stops the program before any model or media is
opened. NaN and infinity are refused everywhere: ``float("nan")`` compares false with every bound, so a plain
``x < 0`` check would let it through.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from inference.io.limits import frame_size_problem


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _describe(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"<= {high:g}"


def ranged(
    kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> Callable[[str], float | int]:
    """An argparse type parsing ``kind`` (``int`` or ``float``) within ``low``/``high`` (inclusive unless open).

    Args:
        kind: ``int`` or ``float``.
        low: Smallest allowed value, or ``None`` for no lower bound.
        high: Largest allowed value (inclusive), or ``None``.
        low_open: Exclude ``low`` itself (``> low`` rather than ``>= low``).

    Returns:
        A function ``str -> value`` raising :class:`argparse.ArgumentTypeError` with the allowed range.
    """
    allowed = _describe(low, high, low_open)

    def parse(text: str) -> float | int:
        value = _number(text, kind)
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    return parse


def size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` (e.g. ``640x360``) into two positive integers."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"width and height must be >= 1, got {text!r}")
    problem = frame_size_problem(w, h)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return w, h
