"""Option fields that carry their own default, range, choices and help, so each is written once.

An options dataclass (:class:`inference.engine.options.RuntimeOptions`, :class:`inference.io.trim.TrimOptions`)
declares every field with :func:`option` and calls :func:`check_fields` in ``__post_init__``; a bad value raises
:class:`~inference.core.errors.OptionError` naming the field. Command lines read the same :class:`Spec` to build their
arguments (``stylize-video``'s parser in :mod:`inference.app.cli`), and only they know their flag names. Values that
arrive as text (a flag, a form field, a JSON message) are read by one parser, :func:`value_from_text`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any

from inference.core.errors import OptionError


@dataclass(frozen=True)
class Spec:
    """What a field accepts and how it is described.

    Attributes:
        help: One phrase for ``--help`` and docs, without the range or default (those are added from the fields).
        kind: ``int`` or ``float`` for numbers (``None``: not a number).
        low, high: Inclusive bounds of a number (``None``: unbounded on that side).
        low_open: Exclude ``low`` itself.
        choices: The allowed values of a string field.
        unit: Appended to the range in messages (``"seconds"``).
        metavar: How ``--help`` names the value.
    """

    help: str
    kind: type | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    unit: str = ""
    metavar: str | None = None

    def range_text(self) -> str:
        """``"in [0, 1]"``, ``">= 2"``, ``"in (0, 1e+09] seconds"`` or ``""`` (no bound)."""
        low, high = self.low, self.high
        if low is not None and high is not None:
            text = f"in {'(' if self.low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            text = f"{'>' if self.low_open else '>='} {low:g}"
        elif high is not None:
            text = f"<= {high:g}"
        else:
            return ""
        return f"{text} {self.unit}".strip()

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (one phrase such as ``"must be in [0, 1], got 2"``), or ``None``."""
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if self.kind is None:
            return None
        wanted = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            return f"must be {'an integer' if self.kind is int else 'a number'}, got {value!r}"
        if not math.isfinite(value):  # NaN compares false with every bound: refuse it before the range check.
            return f"must be a finite number, got {value!r}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            return f"must be {self.range_text()}, got {value!r}"
        return None


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field with ``default`` and a :class:`Spec` (``help`` and the keyword arguments) in its metadata."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


def spec_of(item: Field) -> Spec:
    """The :class:`Spec` of a dataclass field declared with :func:`option`."""
    return item.metadata["spec"]


def option_fields(cls: type) -> dict[str, Field]:
    """The fields of an options dataclass declared with :func:`option`, by name, in declaration order."""
    return {f.name: f for f in fields(cls) if "spec" in f.metadata}


def check_fields(options: Any) -> None:
    """Check every :func:`option` field of a frozen dataclass instance; whole floats become ``float``.

    ``None`` is accepted where the field's default is ``None`` (meaning "automatic" or "not given").

    Raises:
        OptionError: The first field with a bad value (one line naming the field).
    """
    for name, item in option_fields(type(options)).items():
        value = getattr(options, name)
        if value is None and item.default is None:
            continue
        problem = spec_of(item).problem(value)
        if problem is not None:
            raise OptionError(name, problem)
        if spec_of(item).kind is float:
            object.__setattr__(options, name, float(value))


def default_of(item: Field) -> Any:
    """A field's default value (fields declared with :func:`option` always have one)."""
    return None if item.default is MISSING else item.default


def with_fields(cls: type, options: Any, changes: dict[str, Any]) -> Any:
    """``options`` (an instance of ``cls``; ``None``: all defaults) with ``changes`` replaced, checked again.

    Raises:
        TypeError: ``options`` of another type (a dict of keyword arguments, say), or a field ``cls`` does not have.
        OptionError: A bad value.
    """
    if options is None:
        return cls(**changes)
    if not isinstance(options, cls):
        raise TypeError(f"expected {cls.__name__} options, got {type(options).__name__}")
    return replace(options, **changes) if changes else options


#: Words a switch accepts as text (forms, query strings, JSON messages), case-insensitively.
TRUE_WORDS, FALSE_WORDS = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "")


def number_from_text(text: Any, spec: Spec) -> int | float:
    """``text`` read as a number of ``spec.kind`` (``int`` or ``float``; a JSON number passes through) within the
    spec's range. The one number parser of the command lines (:func:`inference.app.argtypes.ranged`) and of
    :func:`value_from_text`.

    Raises:
        ValueError: One phrase: not a number of that kind (``"expected a number, got 'abc'"``), not finite, or out of
            range (``"must be in [0, 1], got '2'"``, the text as typed).
    """
    kind = spec.kind
    expected = "an integer" if kind is int else "a number"
    # JSON true is no number, though Python's bool is an int; and int(1.5) would quietly drop the fraction.
    if isinstance(text, bool) or (kind is int and isinstance(text, float) and not text.is_integer()):
        raise ValueError(f"expected {expected}, got {text!r}")
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ValueError(f"expected {expected}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {text!r}")
    if spec.problem(value) is not None:
        raise ValueError(f"must be {spec.range_text()}, got {text!r}")
    return value


def value_from_text(item: Field, text: Any) -> Any:
    """The value of option field ``item`` from text as a form, a query string or a JSON message carries it, checked
    against the field's :class:`Spec`: numbers by the spec's kind and range, switches (fields defaulting to ``False``)
    from :data:`TRUE_WORDS` and :data:`FALSE_WORDS`, choices as given; empty text or ``None`` is ``None`` where the
    default is ``None``.

    Raises:
        ValueError: A value the field does not accept (one phrase, without the field's name).
    """
    spec = spec_of(item)
    if item.default is False:
        if isinstance(text, bool):
            return text
        word = str(text).strip().lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"expected true or false, got {text!r}")
        return word in TRUE_WORDS
    if item.default is None and (text is None or not str(text).strip()):
        return None
    if text is None:
        raise ValueError("expected a value, got None")
    if spec.kind is not None:
        return number_from_text(text, spec)
    value = str(text).strip()
    problem = spec.problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value
