"""The artifacts a server offers, and the per-request controls (style, strength, colour, strokes) applied to them.

``-m`` names one artifact or a folder of them; each is known by its file stem. Headers are read at start (cheap:
no weights), stylizers are loaded on first use and kept, so switching artifacts on the page costs one load.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inference.core.errors import UserError
from inference.core.option_fields import option_fields, value_from_text
from inference.engine.options import LIVE_FIELDS, RuntimeOptions


@dataclass(frozen=True)
class Controls:
    """What the page's controls (or an API call's form fields) ask for; applied to the next frame.

    Attributes:
        artifact: The artifact's name (its file stem) in the catalog.
        options: The :class:`~inference.engine.options.RuntimeOptions` the frame runs with: the server's own, with
            the live fields (:data:`~inference.engine.options.LIVE_FIELDS`: strength, colour, strokes, consistency,
            style) as the controls set them. Consistency applies to webcam and video frames; images ignore it.
    """

    artifact: str
    options: RuntimeOptions = field(default_factory=RuntimeOptions)

    def live(self) -> dict[str, Any]:
        """The live fields by name: what the page shows and sends."""
        return {name: getattr(self.options, name) for name in LIVE_FIELDS}

    def describe(self) -> dict[str, Any]:
        """``artifact`` and the live fields: the JSON the socket answers a controls message with."""
        return {"artifact": self.artifact, **self.live()}

    def with_live(self, **changes: Any) -> Controls:
        """These controls with live fields replaced (checked again).

        Raises:
            OptionError: A bad value (one line naming the field).
        """
        return replace(self, options=RuntimeOptions.build(self.options, **changes))


#: The fields a request may set: the artifact, and the runtime options' live fields.
CONTROL_FIELDS = ("artifact", *LIVE_FIELDS)


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
        self._defaults = Controls(self.default, self.options)  # what the page's controls start from
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
        base = base or self._defaults
        unknown = sorted(set(fields) - set(CONTROL_FIELDS))
        if unknown:
            raise UserError(f"unknown control {unknown[0]!r}; known: {', '.join(CONTROL_FIELDS)}")
        artifact, changes = base.artifact, {}
        if "artifact" in fields:
            artifact = str(fields["artifact"])
            if artifact not in self.paths:
                raise UserError(f"artifact: unknown artifact {artifact!r}; available: {', '.join(self.paths)}")
            changes["style"] = None  # Another artifact has other styles.
        specs = option_fields(RuntimeOptions)
        for name in LIVE_FIELDS:
            if name in fields:
                try:
                    changes[name] = value_from_text(specs[name], fields[name])
                except ValueError as exc:
                    raise UserError(f"{name}: {exc}") from None
        controls = Controls(artifact, RuntimeOptions.build(base.options, **changes))
        self._check_style(controls)
        return controls

    def _check_style(self, controls: Controls) -> None:
        from inference.model.styles import style_weights

        style_weights(controls.options.style, self.metadata[controls.artifact].style_names)

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

        return Stylizer.from_artifact(self.paths[name], self.options if controls is None else controls.options)


def apply_controls(stylizer, controls: Controls) -> None:
    """Set ``stylizer``'s live options (strength, colour, consistency, style, strokes) to ``controls``' (no reload, no
    re-export); only the fields that differ from the options the Stylizer runs with are changed."""
    wanted = controls.live()
    changes = {name: value for name, value in wanted.items() if getattr(stylizer.options, name) != value}
    if changes:
        stylizer.update(**changes)
