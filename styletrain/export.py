"""Export a training checkpoint to the runtime's ``.safetensors`` artifact or to ONNX.

``styletrain export CKPT -o OUT.safetensors`` (or ``-o OUT.onnx``). The checkpoint is read with
``torch.load(weights_only=True)``, so a foreign checkpoint cannot run code; only ``net.*`` weights are kept, with the
``module.`` (DDP) and ``_orig_mod.`` (torch.compile) wrapper prefixes stripped, and the network is rebuilt from the
registry and loaded strictly. Optimizer state, the loss network and the style targets never reach the artifact.

ONNX models take ``image`` float32 ``[N, 3, H, W]`` RGB in [0, 1] with dynamic N, H and W (H, W at least twice the
network's stride: 8 px for ``johnson``/``tiny``, 16 px for ``light``) and return ``stylized`` of the same shape. After
export the model is run with ONNX Runtime on two sizes (one not a multiple of the stride) and compared with PyTorch:
the maximum absolute difference must be below :data:`ONNX_ATOL`. The exporter itself lives in
:mod:`inference.engine.onnx_backend`, shared with the runtime's ONNX Runtime backend.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inference.app.console import OneLineParser
from inference.core.atomic import atomic_output
from inference.core.errors import UserError
from inference.engine.onnx_backend import export_onnx_model, num_styles
from inference.model.artifact import unwrap_network

log = logging.getLogger(__name__)

ONNX_ATOL = 1e-4
ONNX_CHECK_SIZES = ((64, 96), (45, 70))


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6 (and Lightning's) is a zip archive
_PICKLE_MAGIC = b"\x80"  # a bare pickle: torch.save's legacy format, or anything pickle.dump wrote


def _unreadable_reason(path: Path) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, from its first bytes (never from torch's text)."""
    with path.open("rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        return "truncated or corrupt PyTorch checkpoint, or one holding Python objects other than tensors"
    if head[:1] == _PICKLE_MAGIC:
        return "a pickle holding Python objects other than tensors; refused, none of its code was run"
    return "not a PyTorch checkpoint"


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Lightning checkpoint without unpickling arbitrary objects.

    Raises:
        UserError: Missing, truncated or foreign file (one line naming it and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before refusing a foreign file; the error below says it all.
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot read checkpoint ({exc.strerror or type(exc).__name__})") from None
    except Exception:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, KeyError, ...)
        raise UserError(f"{path}: {_unreadable_reason(path)}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def check_training_checkpoint(path: str | os.PathLike[str], resume: bool) -> dict[str, Any]:
    """Refuse, in one line, a ``--ckpt_path`` that Lightning could not restore, before any run starts.

    Args:
        path: The checkpoint file.
        resume: ``fit`` resumes training, which also needs the optimizer state and the step counters.

    Returns:
        The checkpoint, read as :func:`load_checkpoint` does.

    Raises:
        UserError: Missing, unreadable or foreign file, not written by ``styletrain``, or no training state.
    """
    ckpt = load_checkpoint(path)
    checkpoint_metadata(ckpt, path)
    if resume and not {"optimizer_states", "global_step", "loops"} <= set(ckpt):
        raise UserError(f"{path}: holds weights only (no optimizer state or step counters): it cannot resume fit")
    return ckpt


def checkpoint_metadata(ckpt: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> dict[str, Any]:
    """Network name/kwargs, style name/sha256, config and temporal flag of a checkpoint.

    Written by :meth:`StyleTransferModule.on_save_checkpoint` under ``"styletrain"``; for older checkpoints the
    network is rebuilt from ``hyper_parameters`` (flat or grouped, see
    :func:`~styletrain.module_config.upgrade_hparams`), and their config is those hyper-parameters as written.
    """
    from styletrain.module_config import TemporalConfig, upgrade_hparams

    meta = dict(ckpt.get("styletrain") or {})
    hp = dict(ckpt.get("hyper_parameters") or {})
    if "network" not in meta:
        if "network" not in hp:
            raise UserError(f"{path}: not a styletrain checkpoint (no network name in its hyper-parameters)")
        meta["network"] = hp["network"]
        meta["network_kwargs"] = hp.get("network_kwargs") or {}
    meta.setdefault("style_name", Path(str(hp.get("style", "unknown"))).stem)
    meta.setdefault("style_sha256", "")
    meta.setdefault("config", {"model": hp})
    if "temporal" not in meta:
        temporal = {k: v for k, v in (upgrade_hparams(hp).get("temporal") or {}).items() if k != "motion"}
        meta["temporal"] = TemporalConfig(**temporal).enabled
    return meta


def network_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike[str] = "checkpoint") -> nn.Module:
    """Rebuild the transformer net of a checkpoint and load its weights strictly (eval mode, CPU)."""
    from inference.model.artifact import clean_state_dict, state_dict_mismatch

    meta = checkpoint_metadata(ckpt, path)
    state = clean_state_dict(ckpt["state_dict"], prefix="net.")
    if not state:
        raise UserError(f"{path}: checkpoint holds no 'net.*' weights")
    net = _closest_design(meta["network"], meta.get("network_kwargs") or {}, state)
    mismatch = state_dict_mismatch(net.state_dict(), state)
    if mismatch:
        raise UserError(f"{path}: weights do not match network {meta['network']!r}: {mismatch}")
    net.load_state_dict(state, strict=True)
    return net.eval()


def _closest_design(name: str, kwargs: dict[str, Any], state: dict[str, Any]) -> nn.Module:
    """The network a checkpoint's weights were trained on.

    A checkpoint whose metadata records ``alias_free`` (every one written by ``fit`` since the alias-free design)
    rebuilds exactly that. Hyper-parameters alone (``network_kwargs`` left at its default) do not say which design
    trained: then both are built and the one whose parameter names match the weights best wins, the original
    design on a tie, so the mismatch a caller reports is against the nearest network.
    """
    from inference.model.networks import build_saved_network

    net = build_saved_network(name, kwargs)
    if "alias_free" in kwargs or not getattr(net, "has_alias_free_design", False):
        return net

    def distance(candidate: nn.Module) -> int:
        return len(set(candidate.state_dict()) ^ set(state))

    other = build_saved_network(name, {**kwargs, "alias_free": True})
    return other if distance(other) < distance(net) else net


def save_module_artifact(module: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write a :class:`~styletrain.module.StyleTransferModule`'s current net as an artifact."""
    from inference.model.artifact import save_artifact

    meta = module.artifact_metadata()
    return save_artifact(
        path,
        module.net,
        styles=[(s["name"], s["sha256"]) for s in _style_list(meta)],
        config=meta["config"],
        temporal=meta["temporal"],
    )


def export_onnx(
    net: nn.Module, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None, atol: float = ONNX_ATOL
) -> float:
    """Export ``net`` to ONNX with dynamic batch, height and width, then verify it with ONNX Runtime.

    Args:
        net: A registered network (eval mode is set here).
        path: Destination ``.onnx`` file (written to a temporary file, renamed when verified).
        metadata: Key/values stored as ONNX ``metadata_props`` (non-strings as JSON).
        atol: Maximum allowed absolute difference to PyTorch on the check sizes.

    Returns:
        The maximum absolute difference measured.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    net = unwrap_network(net).eval().float().cpu()
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{dest}: cannot write to {dest.parent} ({exc.strerror or type(exc).__name__})") from None
    with atomic_output(dest, suffix=".onnx") as tmp_path:
        tmp = str(tmp_path)
        export_onnx_model(net, tmp)
        model = onnx.load(tmp)
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value, default=str)
        onnx.save(model, tmp)
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        worst = 0.0
        generator = torch.Generator().manual_seed(0)
        styles = num_styles(net)
        for batch, (height, width) in enumerate(ONNX_CHECK_SIZES, start=1):
            x = torch.rand(batch, 3, height, width, generator=generator)
            feeds = {"image": x.numpy()}
            # A multi-style graph is checked on a blend of all its styles, which exercises every style's parameters.
            style = torch.rand(styles, generator=generator) + 0.1
            style = style / style.sum()
            if styles > 1:
                feeds["style"] = style.numpy()
            with torch.no_grad():
                expected = net(x, style=style if styles > 1 else None).numpy()
            got = session.run(None, feeds)[0]
            if got.shape != expected.shape:
                raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {expected.shape}")
            worst = max(worst, float(np.abs(got - expected).max()))
        if worst > atol:
            raise UserError(
                f"{dest}: ONNX Runtime output differs from PyTorch by {worst:.2e} > `atol` {atol:.0e}",
                mentions=("atol",),
            )
    log.info("ONNX verified with ONNX Runtime: max |diff| %.2e (tolerance %.0e)", worst, atol)
    return worst


def export(source: str | os.PathLike[str], output: str | os.PathLike[str], atol: float = ONNX_ATOL) -> Path:
    """Export a checkpoint (``.ckpt``) or an artifact (``.safetensors``, ONNX output only) to ``output``.

    The output format follows the extension: ``.safetensors`` or ``.onnx``.

    Raises:
        UserError: Unreadable input, unknown output extension.
    """
    source, output = Path(source), Path(output)
    if output.suffix not in (".safetensors", ".onnx"):
        raise UserError(f"{output}: output must end in .safetensors or .onnx")
    if source.suffix == ".safetensors":
        from inference.model.artifact import load_artifact

        artifact = load_artifact(source)
        if output.suffix != ".onnx":
            raise UserError(f"{source}: already an artifact; export it to .onnx or copy it")
        net, meta = artifact.network, dict(vars(artifact.metadata))
    else:
        ckpt = load_checkpoint(source)
        net, meta = network_from_checkpoint(ckpt, source), checkpoint_metadata(ckpt, source)
    if output.suffix == ".onnx":
        export_onnx(
            net,
            output,
            metadata={k: meta[k] for k in ("network", "style_name", "style_sha256", "temporal")}
            | {"network_kwargs": meta.get("network_kwargs", {}), "config": meta.get("config", {})}
            | {"styles": _style_list(meta)},
            atol=atol,
        )
        return output
    from inference.model.artifact import save_artifact

    return save_artifact(
        output,
        net,
        styles=[(s["name"], s["sha256"]) for s in _style_list(meta)],
        config=meta["config"],
        temporal=bool(meta["temporal"]),
    )


def _style_list(meta: dict[str, Any]) -> list[dict[str, str]]:
    """The ``[{name, sha256}, ...]`` style list of artifact or checkpoint metadata (one style when none is listed)."""
    styles = meta.get("styles") or [(meta["style_name"], meta["style_sha256"])]
    # Artifact metadata holds StyleEntry objects; checkpoints and the module hold JSON [name, sha256] pairs.
    pairs = [(s.name, s.sha256) if hasattr(s, "name") else (s[0], s[1]) for s in styles]
    return [{"name": str(name), "sha256": str(digest)} for name, digest in pairs]


def build_parser() -> argparse.ArgumentParser:
    """The ``styletrain export`` argument parser."""
    parser = OneLineParser(
        prog="styletrain export",
        description="Export a training checkpoint (.ckpt, any strategy, compiled or not) to a .safetensors artifact "
        "for stylize-video, or a checkpoint/artifact to ONNX (dynamic height and width, verified with ONNX Runtime).",
    )
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) or, for ONNX output, an artifact")
    parser.add_argument("-o", "--output", required=True, help="OUT.safetensors or OUT.onnx")
    parser.add_argument("--atol", type=float, default=ONNX_ATOL, help="ONNX check tolerance (max abs diff)")
    return parser


def main(argv: list[str] | None = None) -> Path:
    """``styletrain export CKPT -o OUT.safetensors|OUT.onnx``; prints the output path."""
    args = build_parser().parse_args(argv)
    if not math.isfinite(args.atol) or args.atol <= 0:
        raise UserError(f"--atol must be a positive number, got {args.atol}")
    try:
        path = export(args.checkpoint, args.output, atol=args.atol)
    except UserError as exc:  # the library names its fields; this command's flags are "--" + the field
        raise UserError(exc.with_flags(lambda field: "--" + field)) from None
    print(path)
    return path
