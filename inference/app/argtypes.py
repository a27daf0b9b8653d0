"""The command lines' side of the options: ``argparse`` arguments made from options dataclasses, flag names, and
types that check a value's range at parse time and name the allowed range in the message.

An options dataclass (:class:`~inference.engine.options.RuntimeOptions`, :class:`~inference.io.trim.TrimOptions`,
:class:`~inference.io.encode_options.EncodeOptions`) declares each field's default, range, choices and help once
(:mod:`inference.core.option_fields`); :func:`add_field` turns a field into ``--field-name`` with those, and
:func:`from_namespace` turns the parsed flags back into the dataclass. The library names fields; :func:`flag` is the
one place a field name becomes a flag.

Each type factory returns a callable for ``add_argument(type=...)``. It raises :class:`argparse.ArgumentTypeError`,
which argparse reports as ``argument --opt: <message>``, so a bad value stops the program before any model or media
is opened. NaN and infinity are refused everywhere: ``float("nan")`` compares false with every bound, so a plain
``x < 0`` check would let it through.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from inference.core.option_fields import Spec, default_of, number_from_text, option_fields, spec_of
from inference.io.trim import size_problem

#: What a command line's default is where it differs from the library's (``field -> default``), per dataclass field.
Defaults = dict[str, Any]


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
    spec = Spec("", kind=kind, low=low, high=high, low_open=low_open)  # the options' own range check

    def parse(text: str) -> float | int:
        try:
            return number_from_text(text, spec)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` (e.g. ``640x360``) into two positive integers."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    problem = size_problem(w, h)  # the check of TrimOptions.size, here with the text as typed
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return w, h


def flag(field: str) -> str:
    """The command-line flag of an options field: ``stroke_scale`` -> ``--stroke-scale``."""
    return "--" + field.replace("_", "-")


def field_help(cls: type, name: str, default: Any) -> str:
    """The ``--help`` text of field ``name`` of ``cls``: its help, then its range and ``default`` (when not None)."""
    spec = spec_of(option_fields(cls)[name])
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    notes = [spec.range_text(), "" if default is None else f"default {shown}"]
    notes = [n for n in notes if n]
    return f"{spec.help} ({'; '.join(notes)})" if notes else spec.help


def add_field(group: argparse._ActionsContainer, cls: type, name: str, defaults: Defaults | None = None) -> None:
    """Add ``--name`` for field ``name`` of options dataclass ``cls``: its default (or ``defaults[name]``), range
    (checked at parse time by :func:`ranged`), choices, metavar and help. A field with a ``False`` default becomes a
    ``store_true`` switch; ``size`` parses ``WxH``."""
    item = option_fields(cls)[name]
    spec = spec_of(item)
    default = (defaults or {}).get(name, default_of(item))
    if default is False:
        group.add_argument(flag(name), action="store_true", help=spec.help)
        return
    kind = size if name == "size" else None
    if spec.kind is not None:
        kind = ranged(spec.kind, spec.low, spec.high, low_open=spec.low_open)
    group.add_argument(
        flag(name), type=kind, default=default, choices=spec.choices, metavar=spec.metavar,
        help=field_help(cls, name, default),
    )  # fmt: skip


def from_namespace(cls: type, opts: argparse.Namespace, **fixed: Any) -> Any:
    """``cls`` made from the parsed flags of its fields (fields without a flag keep their defaults) and ``fixed``."""
    values = {name: getattr(opts, name) for name in option_fields(cls) if hasattr(opts, name)}
    return cls(**(values | fixed))
