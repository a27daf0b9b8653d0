"""Choosing and blending the styles of a multi-style network: names and ``NAME:WEIGHT,...`` specs -> weights.

A style is chosen by name (``"starry"``) or blended by weights (``"starry:0.3,wave:0.7"`` or
``{"starry": 0.3, "wave": 0.7}``); weights are normalised to sum to 1 and mix the network's per-style normalisation
parameters (:meth:`inference.model.networks.StyleNetwork.set_style`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from inference.core.errors import OptionError

StyleSpec = str | Mapping[str, float]


def parse_blend(text: str) -> dict[str, float]:
    """Parse ``"a:0.3,b:0.7"`` (a single ``"a"`` means weight 1) into ``{"a": 0.3, "b": 0.7}``.

    Raises:
        OptionError: An empty entry, a weight that is not a number, or a name given twice (one line naming the
            field ``style``).
    """
    blend: dict[str, float] = {}
    for entry in text.split(","):
        name, sep, value = entry.strip().rpartition(":")
        name = name.strip() if sep else value.strip()
        if not name:
            raise OptionError("style", f"{text!r}: empty style name; use NAME or NAME:WEIGHT,NAME:WEIGHT")
        try:
            weight = float(value) if sep else 1.0
        except ValueError:
            raise OptionError("style", f"{text!r}: weight {value.strip()!r} of {name!r} is not a number") from None
        if name in blend:
            raise OptionError("style", f"{text!r}: style {name!r} is given twice")
        blend[name] = weight
    return blend


def style_weights(style: StyleSpec | None, names: Sequence[str]) -> list[float]:
    """Resolve a style choice or blend into one normalised weight per style of the network.

    Args:
        style: ``None`` (the first style), a style name, a ``"a:0.3,b:0.7"`` spec, or a name -> weight mapping.
        names: The network's style names, in its order.

    Returns:
        ``len(names)`` non-negative weights summing to 1.

    Raises:
        OptionError: An unknown name (the message lists the available ones), a negative or non-finite weight, or
            weights summing to zero (one line naming the field ``style``).
    """
    if style is None:
        return [1.0] + [0.0] * (len(names) - 1)
    text = style if isinstance(style, str) else None
    blend = {text: 1.0} if text in names else (parse_blend(text) if text is not None else dict(style))
    unknown = [n for n in blend if n not in names]
    if unknown:
        available = ", ".join(repr(n) for n in names)
        raise OptionError("style", f": unknown style {unknown[0]!r}; this model has: {available}")
    for name, weight in blend.items():
        if not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
            raise OptionError("style", f": weight of {name!r} must be a finite number >= 0, got {weight!r}")
    # Scale by the largest weight first: finite weights such as 1e308 each can sum to infinity.
    largest = max(blend.values())
    if largest <= 0:
        raise OptionError("style", ": the style weights sum to zero")
    scaled = {name: weight / largest for name, weight in blend.items()}
    total = sum(scaled.values())
    return [scaled.get(n, 0.0) / total for n in names]


def style_names(named: Sequence[str], num_styles: int) -> list[str]:
    """A network's style names: ``named`` (an artifact's, in the network's order) when given, else ``"0"``, ``"1"``,
    ... for each of its ``num_styles`` styles (a network built in Python)."""
    return list(named) if named else [str(i) for i in range(num_styles)]
