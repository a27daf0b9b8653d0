"""How one file is converted: the part and size of the input, the encoder settings, replacing, timing.

:class:`FileOptions` is what :func:`inference.app.convert.stylize_file` and
:func:`inference.app.segment_run.stylize_segment` take. ``stylize-video`` builds one from its flags
(:mod:`inference.app.cli`) and it travels unchanged through the batch executors (worker processes, Ray actors), so it
is a frozen, picklable dataclass of frozen, picklable parts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from inference.core.option_fields import check_fields, option, with_fields
from inference.io.encode_options import EncodeOptions
from inference.io.trim import TrimOptions


@dataclass(frozen=True)
class FileOptions:
    """Per-file conversion options; checked when made (frozen: change with :meth:`build` or
    :func:`dataclasses.replace`).

    Attributes:
        trim: The part of the input and the output size (:class:`~inference.io.trim.TrimOptions`); the default reads
            all of it at its own size.
        encode: Encoder settings (:class:`~inference.io.encode_options.EncodeOptions`), audio copy included.
        overwrite: Replace an existing output.
        stats: Time every pipeline stage and print the table (on stderr).
    """

    trim: TrimOptions = field(default_factory=TrimOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    overwrite: bool = option(False, "replace an existing output")
    stats: bool = option(False, "print the busy time of every pipeline stage per file")

    def __post_init__(self) -> None:
        # The keyword dicts of old (or None for "defaults") must fail here, not deep inside a worker process.
        for name, cls in (("trim", TrimOptions), ("encode", EncodeOptions)):
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise TypeError(f"FileOptions.{name}: expected {cls.__name__}, got {type(value).__name__}")
        check_fields(self)

    @classmethod
    def build(cls, file_options: FileOptions | None = None, **fields: Any) -> FileOptions:
        """``file_options`` (default: all defaults) with ``fields`` replaced, checked again.

        Args:
            file_options: The options to start from.
            **fields: Fields of :class:`FileOptions` (``trim``, ``encode``, ``overwrite``, ``stats``), or, as a
                shorthand, fields of :class:`~inference.io.trim.TrimOptions` or
                :class:`~inference.io.encode_options.EncodeOptions` (``start=2.0``, ``crf=23``), which replace that
                field of ``trim`` or ``encode`` (after a ``trim`` or ``encode`` given alongside).

        Raises:
            TypeError: ``file_options`` that are no :class:`FileOptions`, or a field none of the three has.
            OptionError: A bad value.
        """
        own, parts = _field_names(cls), {"trim": _field_names(TrimOptions), "encode": _field_names(EncodeOptions)}
        unknown = sorted(set(fields) - own - parts["trim"] - parts["encode"])
        if unknown:
            raise TypeError(f"unknown FileOptions field {unknown[0]!r}")
        built = with_fields(cls, file_options, {k: v for k, v in fields.items() if k in own})
        changed = {}
        for name, names in parts.items():
            changes = {k: v for k, v in fields.items() if k in names}
            if changes:
                changed[name] = with_fields(type(getattr(built, name)), getattr(built, name), changes)
        return dataclasses.replace(built, **changed) if changed else built


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}
