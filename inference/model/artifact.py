"""The exported artifact: one ``.safetensors`` file holding a style network's weights and everything to rebuild it.

Header metadata (all strings, as safetensors requires):

========================  ==============================================================================
``format``                ``"styletrain-artifact"``: tells our files from other safetensors files
``format_version``        ``"3"``; readers refuse newer versions and still read versions 1 (single-style) and 2
``network``               registry name, e.g. ``"johnson"``
``network_kwargs``        JSON object: ``build_saved_network(network, network_kwargs)`` rebuilds the module
                          (version 3 always records ``alias_free``; earlier versions predate that design)
``styles``                JSON list, in the network's style order, of ``{"name": ..., "sha256": ...}``: each
                          style's name (usually the style image's file stem) and its image's sha256 (version 2)
``style_name``            the first style's name (version 1: the only style)
``style_sha256``          the first style image's sha256
``config``                JSON of the full resolved training config
``temporal``              ``"true"`` / ``"false"``: trained with a temporal loss
``versions``              JSON: torch, safetensors, styletrain, python versions that wrote the file
========================  ==============================================================================

Loading never unpickles (safetensors only), rebuilds the network from the registry and loads the weights
strictly; any problem becomes a one-line :class:`~inference.core.errors.ArtifactError` naming the file.
"""

from __future__ import annotations

import json
import os
import platform
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inference.core.atomic import atomic_output
from inference.core.errors import ArtifactError, UserError
from inference.model.networks import build_saved_network

FORMAT = "styletrain-artifact"
# 3: network_kwargs record the alias-free design; a version-2 reader would fail on it with a less clear message.
FORMAT_VERSION = 3
_WRAPPER_PREFIXES = ("_orig_mod", "module")  # torch.compile and DDP / DataParallel wrappers


@dataclass(frozen=True)
class StyleEntry:
    """One style of an artifact: its name and its image's sha256 hex digest (may be empty when unknown)."""

    name: str
    sha256: str


@dataclass(frozen=True)
class ArtifactMetadata:
    """Decoded artifact header. ``style_name`` / ``style_sha256`` are the first style's; ``styles`` lists all."""

    format_version: int
    network: str
    network_kwargs: dict[str, Any]
    style_name: str
    style_sha256: str
    config: dict[str, Any]
    temporal: bool
    versions: dict[str, str] = field(default_factory=dict)
    styles: tuple[StyleEntry, ...] = ()

    @property
    def style_names(self) -> list[str]:
        """The style names in the network's order."""
        return [s.name for s in self.styles]


@dataclass
class Artifact:
    """A loaded artifact: the network (eval mode, frozen, on the requested device), its metadata and path."""

    network: nn.Module
    metadata: ArtifactMetadata
    path: Path


def clean_state_dict(state_dict: dict[str, torch.Tensor], prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes from parameter names, optionally keeping one sub-module.

    ``_orig_mod.`` (``torch.compile``) and ``module.`` (DDP / DataParallel) components are removed wherever they
    occur in a key's module path, e.g. ``"module.net._orig_mod.conv.weight" -> "net.conv.weight"``.

    Args:
        state_dict: Parameter name to tensor (not modified).
        prefix: If given, e.g. ``"net."``, keep only keys under it (after stripping) with the prefix removed,
            as when extracting the network from a LightningModule checkpoint.

    Returns:
        A new dict with the same tensor objects under cleaned names.
    """
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        name = ".".join([p for p in path if p not in _WRAPPER_PREFIXES] + [leaf])
        if prefix is not None:
            if not name.startswith(prefix):
                continue
            name = name[len(prefix) :]
        cleaned[name] = value
    return cleaned


def _versions() -> dict[str, str]:
    from importlib import metadata

    import safetensors

    import inference

    try:
        styletrain_version = metadata.version("styletrain")
    except metadata.PackageNotFoundError:
        styletrain_version = inference.__version__
    return {
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "styletrain": styletrain_version,
        "python": platform.python_version(),
    }


def unwrap_network(net: nn.Module) -> nn.Module:
    """The network inside ``torch.compile`` (``._orig_mod``) and DDP / DataParallel (``.module``) wrappers, in any
    nesting; ``net`` itself when it is not wrapped.

    A compile wrapper is recognised by its ``_orig_mod`` sub-module (it forwards attribute look-ups such as ``name``
    to the network, so it cannot be told by those); any other module counts as a wrapper only while it has no
    ``name`` (registered networks have one) and a ``module`` sub-module.
    """
    while True:
        inner = net._modules.get("_orig_mod")
        if not isinstance(inner, nn.Module) and not getattr(net, "name", ""):
            inner = getattr(net, "module", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def save_artifact(
    path: str | os.PathLike[str],
    net: nn.Module,
    *,
    style_name: str = "",
    style_sha256: str = "",
    config: dict[str, Any],
    temporal: bool,
    styles: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write ``net`` and its metadata to a ``.safetensors`` artifact, atomically.

    Args:
        path: Destination file; parent folders are created. Written to a temporary file beside it, then renamed.
        net: A registered network (``net.name`` and ``net.config`` set), possibly wrapped by ``torch.compile``.
        style_name: Human-readable style name of a single-style network (ignored when ``styles`` is given).
        style_sha256: sha256 hex digest of that style image's bytes.
        config: The full resolved training config; values JSON cannot hold are stored as ``str(value)``.
        temporal: Whether the network was trained with a temporal loss.
        styles: ``(name, sha256)`` of every style, in the network's style order; default
            ``[(style_name, style_sha256)]``. Its length must equal the network's ``num_styles`` and names must be
            unique and non-empty.

    Returns:
        The destination path.
    """
    from safetensors.torch import save_file

    module = unwrap_network(net)
    name, kwargs = getattr(module, "name", ""), getattr(module, "config", None)
    if not name or not isinstance(kwargs, dict):
        raise ValueError("save_artifact needs a network from inference.model.networks.build_network (name and config)")
    entries = [StyleEntry(str(n), str(h)) for n, h in (styles if styles is not None else [(style_name, style_sha256)])]
    _check_styles(entries, module.num_styles, unnamed_ok=styles is None)
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in clean_state_dict(module.state_dict()).items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "network": name,
        "network_kwargs": json.dumps(kwargs, sort_keys=True),
        "styles": json.dumps([{"name": e.name, "sha256": e.sha256} for e in entries]),
        "style_name": entries[0].name,
        "style_sha256": entries[0].sha256,
        "config": json.dumps(config, sort_keys=True, default=str),
        "temporal": "true" if temporal else "false",
        "versions": json.dumps(_versions(), sort_keys=True),
    }
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return dest


def _check_styles(entries: list[StyleEntry], num_styles: int, *, unnamed_ok: bool) -> None:
    """Refuse style lists that do not match the network; the one style given as ``style_name`` may be unnamed."""
    if len(entries) != num_styles:
        raise ValueError(f"the network has {num_styles} styles but {len(entries)} style entries were given")
    names = [e.name for e in entries]
    if (not unnamed_ok and any(not n for n in names)) or len(set(names)) != len(names):
        raise ValueError(f"style names must be unique and non-empty, got {names}")


def _check_file(path: Path) -> None:
    """Cheap structural checks before safetensors parses the file, for precise one-line messages."""
    if not path.exists():
        raise ArtifactError(f"{path}: no such file")
    if not path.is_file():
        raise ArtifactError(f"{path}: not a file")
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(head) < 9:
        raise ArtifactError(f"{path}: not a safetensors artifact (file too short, {size} bytes)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{":
        raise ArtifactError(f"{path}: not a safetensors artifact (no JSON header)")
    if header_len > size - 8:
        raise ArtifactError(f"{path}: truncated or not a safetensors file (header of {header_len} bytes, file {size})")


def _parse_metadata(path: Path, raw: dict[str, str] | None) -> ArtifactMetadata:
    raw = raw or {}
    if raw.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a styletrain artifact (safetensors file without format={FORMAT!r})")
    try:
        version = int(raw.get("format_version", ""))
    except ValueError:
        raise ArtifactError(f"{path}: invalid format_version {raw.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format version {version} is newer than this runtime supports ({FORMAT_VERSION}); "
            "upgrade styletrain"
        )
    if version < 1:
        raise ArtifactError(f"{path}: invalid format_version {version}")
    decoded: dict[str, Any] = {}
    for key in ("network_kwargs", "config", "versions"):
        try:
            decoded[key] = json.loads(raw.get(key, "{}"))
        except json.JSONDecodeError:
            raise ArtifactError(f"{path}: metadata field {key!r} is not valid JSON") from None
        if not isinstance(decoded[key], dict):
            raise ArtifactError(f"{path}: metadata field {key!r} is not a JSON object")
    if "network" not in raw:
        raise ArtifactError(f"{path}: metadata has no 'network' field")
    if raw.get("temporal", "false") not in ("true", "false"):
        raise ArtifactError(f"{path}: metadata field 'temporal' must be 'true' or 'false'")
    styles = _parse_styles(path, raw, version)
    return ArtifactMetadata(
        format_version=version,
        network=raw["network"],
        network_kwargs=decoded["network_kwargs"],
        style_name=styles[0].name,
        style_sha256=styles[0].sha256,
        config=decoded["config"],
        temporal=raw.get("temporal") == "true",
        versions={str(k): str(v) for k, v in decoded["versions"].items()},
        styles=styles,
    )


def _parse_styles(path: Path, raw: dict[str, str], version: int) -> tuple[StyleEntry, ...]:
    """The style list: version 1 has one style in ``style_name``/``style_sha256``; version 2 a ``styles`` list."""
    if version == 1:
        return (StyleEntry(raw.get("style_name", ""), raw.get("style_sha256", "")),)
    try:
        items = json.loads(raw.get("styles", ""))
    except json.JSONDecodeError:
        raise ArtifactError(f"{path}: metadata field 'styles' is missing or not valid JSON") from None
    valid = (
        isinstance(items, list)
        and items
        and all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("sha256"), str) for i in items
        )
    )
    if not valid:
        raise ArtifactError(f"{path}: metadata field 'styles' must be a non-empty list of {{name, sha256}} objects")
    names = [i["name"] for i in items]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{path}: metadata field 'styles' repeats a name: {names}")
    return tuple(StyleEntry(i["name"], i["sha256"]) for i in items)


def read_metadata(path: str | os.PathLike[str]) -> ArtifactMetadata:
    """Read and validate an artifact's header without loading its weights.

    Raises:
        ArtifactError: Missing, truncated, foreign or newer-format file (one line naming the path).
    """
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata()
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError/ValueError variants
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from None
    return _parse_metadata(path, raw)


def load_artifact(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Artifact:
    """Load an artifact: rebuild its network from the registry and load the weights strictly.

    Args:
        path: The ``.safetensors`` artifact.
        device: Where to put the network.

    Returns:
        :class:`Artifact` whose network is in eval mode with ``requires_grad`` off.

    Raises:
        ArtifactError: Any problem with the file (one line naming the path): missing, not safetensors,
            truncated, foreign, newer format, unknown network, missing / unexpected keys, shape mismatch,
            non-floating tensors, NaN or infinite values.
    """
    from safetensors.torch import load_file

    path = Path(path)
    metadata = read_metadata(path)
    try:
        net = build_saved_network(metadata.network, metadata.network_kwargs)
    except UserError as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    if len(metadata.styles) != net.num_styles:
        raise ArtifactError(
            f"{path}: metadata lists {len(metadata.styles)} styles but network {metadata.network!r} has "
            f"{net.num_styles}"
        )
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read the weights ({exc})") from None
    mismatch = state_dict_mismatch(net.state_dict(), tensors)
    if mismatch:
        raise ArtifactError(f"{path}: weights do not match network {metadata.network!r}: {mismatch}")
    for key, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise ArtifactError(f"{path}: tensor {key!r} has non-floating dtype {tensor.dtype}")
        bad = int(tensor.numel() - torch.isfinite(tensor).sum())
        if bad:
            # A diverged training run exports NaN/Inf weights; they would stylize every frame black or garbage.
            raise ArtifactError(f"{path}: tensor {key!r} has {bad} NaN or infinite values of {tensor.numel()}")
    net.load_state_dict(tensors, strict=True)
    try:
        net = net.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ArtifactError(f"{path}: cannot move the network to device {device!r} ({exc})") from None
    net.eval().requires_grad_(False)
    return Artifact(network=net, metadata=metadata, path=path)


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor | Sequence[int]],
    actual: Mapping[str, Any],
    *,
    sort_key: Callable[[str], Any] | None = None,
    limit: int = 3,
) -> str | None:
    """How a state dict differs from the one a model defines, in one line; ``None`` when names and shapes match.

    The one mismatch message of the project: artifacts, training checkpoints and loss-network weights all use it.

    Args:
        expected: The model's own state dict: names to tensors (only their shapes are read) or to shapes.
        actual: What the file holds (names to tensors; a value without a shape counts as of another shape).
        sort_key: Order of the listed keys (default: alphabetical).
        limit: How many keys of each kind to name.

    Returns:
        E.g. ``"missing keys [a, b] (2); unexpected keys [c] (1)"``, or when every name matches, the first tensor of
        another shape: ``"tensor 'w' has shape [8, 3], expected [4, 3]"``.
    """
    details = []
    for label, keys in (("missing", set(expected) - set(actual)), ("unexpected", set(actual) - set(expected))):
        if keys:
            ordered = sorted(keys, key=sort_key)
            shown = ", ".join(ordered[:limit])
            details.append(f"{label} keys [{shown}{', ...' if len(ordered) > limit else ''}] ({len(ordered)})")
    if details:
        return "; ".join(details)
    for key in sorted(expected, key=sort_key):
        want, shape = list(getattr(expected[key], "shape", expected[key])), getattr(actual[key], "shape", None)
        if shape is None or list(shape) != want:
            got = list(shape) if shape is not None else type(actual[key]).__name__
            return f"tensor {key!r} has shape {got}, expected {want}"
    return None
