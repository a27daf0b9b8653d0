"""The artifacts a server offers, and the per-request controls (style, strength, colour, strokes) applied to them.

``-m`` names one artifact or a folder of them; each is known by its file stem. Headers are read at start (cheap:
no weights), stylizers are loaded on first use and kept, so switching artifacts on the page costs one load.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from inference.core.errors import UserError
from inference.core.option_fields import option_fields, spec_of
from inference.engine.options import LIVE_FIELDS, RuntimeOptions

_DEFAULTS = RuntimeOptions()


@dataclass(frozen=True)
class Controls:
    """What the page's controls (or an API call's form fields) ask for; applied to the next frame. Each is a live field
    of :class:`~inference.engine.options.RuntimeOptions`, with its default and range.

    Attributes:
        artifact: The artifact's name (its file stem) in the catalog.
        style: A style name or a ``"a:0.3,b:0.7"`` blend of a multi-style artifact; ``None`` for the first style.
        strength: In [0, 1]: 1 the full style, 0 the original frame.
        preserve_color: Keep the input's colours, take only the luminance from the style.
        stroke_scale: In [0.25, 4]: strokes this many times larger.
        stroke_detail: ``"none"`` or ``"guided"``.
        consistency: In [0, 1]: how strongly webcam and video frames are pulled towards the previous output moved
            by the input's motion (:mod:`inference.engine.consistency`); 0 is off. Images ignore it.
    """

    artifact: str
    style: str | None = None
    strength: float = _DEFAULTS.strength
    preserve_color: bool = _DEFAULTS.preserve_color
    stroke_scale: float = _DEFAULTS.stroke_scale
    stroke_detail: str = _DEFAULTS.stroke_detail
    consistency: float = _DEFAULTS.consistency


_FIELDS = ("artifact", "style", "strength", "preserve_color", "stroke_scale", "stroke_detail", "consistency")


def _number(name: str, value: Any) -> float:
    """A form value of the number field ``name`` of :class:`RuntimeOptions`, within that field's range."""
    spec = spec_of(option_fields(RuntimeOptions)[name])
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if spec.problem(number) is not None:
        raise UserError(f"{name}: expected a number {spec.range_text()}, got {value!r}")
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no", ""):
        return False
    raise UserError(f"{name}: expected true or false, got {value!r}")


class Catalog:
    """The artifacts under ``-m`` and their loaded stylizers.

    Args:
        path: One ``.safetensors`` artifact, or a folder holding several (each known by its stem).
        options: :class:`~inference.engine.options.RuntimeOptions` shared by every artifact (device, precision,
            backend, batch size); the controls set the live ones per request.

    Raises:
        UserError: The path does not exist, holds no artifact, or an artifact's header is invalid (one line).
    """

    def __init__(self, path: str | Path, options: RuntimeOptions | None = None) -> None:
        from inference.model.artifact import read_metadata

        path = Path(path)
        if path.is_dir():
            files = sorted(path.glob("*.safetensors"))
            if not files:
                raise UserError(f"{path}: no .safetensors artifacts in this folder")
        elif path.is_file():
            files = [path]
        else:
            raise UserError(f"{path}: no such artifact or folder")
        self.paths = {f.stem: f for f in files}
        self.metadata = {name: read_metadata(f) for name, f in self.paths.items()}
        self.options = options or RuntimeOptions()
        self.default = next(iter(self.paths))
        self._stylizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def describe(self) -> list[dict[str, Any]]:
        """One entry per artifact: ``name``, ``architecture``, ``styles`` (in the network's order), ``temporal``."""
        return [
            {"name": name, "architecture": meta.network, "styles": meta.style_names, "temporal": meta.temporal}
            for name, meta in self.metadata.items()
        ]

    def controls(self, fields: dict[str, Any], base: Controls | None = None) -> Controls:
        """Validate form or JSON fields into :class:`Controls`; absent fields keep ``base``'s (or the defaults).

        Raises:
            UserError: An unknown field, artifact or style, or a value out of range (one line naming the field).
        """
        base = base or Controls(self.default)
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise UserError(f"unknown control {unknown[0]!r}; known: {', '.join(_FIELDS)}")
        changes: dict[str, Any] = {}
        if "artifact" in fields:
            name = str(fields["artifact"])
            if name not in self.paths:
                raise UserError(f"artifact: unknown artifact {name!r}; available: {', '.join(self.paths)}")
            changes["artifact"] = name
            changes.setdefault("style", None)  # Another artifact has other styles.
        if "style" in fields:
            changes["style"] = str(fields["style"]).strip() or None if fields["style"] is not None else None
        if "strength" in fields:
            changes["strength"] = _number("strength", fields["strength"])
        if "preserve_color" in fields:
            changes["preserve_color"] = _flag("preserve_color", fields["preserve_color"])
        if "stroke_scale" in fields:
            changes["stroke_scale"] = _number("stroke_scale", fields["stroke_scale"])
        if "stroke_detail" in fields:
            modes = spec_of(option_fields(RuntimeOptions)["stroke_detail"]).choices
            if fields["stroke_detail"] not in modes:
                raise UserError(f"stroke_detail: expected one of {', '.join(modes)}, got {fields['stroke_detail']!r}")
            changes["stroke_detail"] = fields["stroke_detail"]
        if "consistency" in fields:
            changes["consistency"] = _number("consistency", fields["consistency"])
        controls = replace(base, **changes)
        self._check_style(controls)
        return controls

    def _check_style(self, controls: Controls) -> None:
        from inference.model.styles import style_weights

        style_weights(controls.style, self.metadata[controls.artifact].style_names)

    def stylizer(self, name: str):
        """The artifact's :class:`~inference.engine.stylizer.Stylizer`, loaded on first use and kept (thread-safe)."""
        with self._lock:
            if name not in self._stylizers:
                self._stylizers[name] = self.load(name)
            return self._stylizers[name]

    def load(self, name: str, controls: Controls | None = None):
        """A new Stylizer for artifact ``name`` (video jobs get their own, so page changes never alter a running
        job), configured by ``controls`` when given."""
        from inference.engine.stylizer import Stylizer

        stylizer = Stylizer.from_artifact(self.paths[name], self.options)
        if controls is not None:
            apply_controls(stylizer, controls)
        return stylizer


def apply_controls(stylizer, controls: Controls) -> None:
    """Set ``stylizer``'s strength, colour, consistency, style and strokes to ``controls`` (no reload, no re-export);
    settings that did not change since the last call cost nothing."""
    previous: Controls | None = getattr(stylizer, "serve_controls", None)
    if previous == controls:
        return
    changes = {
        n: getattr(controls, n) for n in LIVE_FIELDS if previous is None or getattr(previous, n) != getattr(controls, n)
    }
    stylizer.update(**changes)
    stylizer.serve_controls = controls
