"""Run a style network through ONNX Runtime on the CPU, and the ONNX export it needs.

ONNX Runtime ran the CPU networks faster than eager PyTorch (bench/results and docs/performance.md have the figures), so
:class:`~inference.engine.stylizer.Stylizer` uses it on the CPU when it is installed. ``onnx`` and ``onnxruntime`` are
optional: they are imported lazily here, and :func:`available` says whether both import.

Exports of artifacts are cached on disk, keyed by the artifact's sha256 (:func:`cached_session`), so a start-up does
not trace the network again. :func:`export_onnx_model` is also what ``styletrain export -o OUT.onnx`` writes (one
exporter, not two).

A multi-style network (``num_styles > 1``) is exported as one graph with a second input, ``style``: float32 ``[S]``
weights (non-negative, summing to 1) that mix the per-style normalisation parameters, so one file serves every style
and every blend. Single-style networks have the one input ``image``, as before.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.core.atomic import atomic_output
from inference.core.errors import MediaError
from inference.model.artifact import unwrap_network

log = logging.getLogger(__name__)

#: Input size the graph is traced with (H and W stay dynamic); at least twice every network's stride.
EXAMPLE_SIZE = (64, 96)
OPSET = 17


def available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` both import (the ``train`` extra installs them)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except Exception:  # ImportError, or a broken binary wheel raising something else
        return False
    return True


class DynamicPadCrop(nn.Module):
    """Pad-to-stride and crop written with traced size arithmetic, so ONNX keeps H and W dynamic.

    The network's own padding computes Python integers, which tracing freezes to the example's size. This wrapper
    reuses the network's ``_forward_padded`` and its sigmoid output map. It matches ``net(x)`` for H and W of at
    least ``2 * net.stride`` (smaller inputs are padded further, with replication, by the network itself); exports
    are checked against ``net(x)`` on sizes that need padding.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 3, H, W]`` float RGB in [0, 1] (and ``[S]`` style weights) -> same shape and range."""
        self.net.bind_style(style, x.shape[0])
        height, width = x.shape[-2], x.shape[-1]
        stride = self.net.stride
        pad_h, pad_w = (stride - height % stride) % stride, (stride - width % stride) % stride
        logits, _ = self.net._forward_padded(F.pad(x, [0, pad_w, 0, pad_h], mode="reflect"))
        return torch.sigmoid(logits[..., :height, :width])


def num_styles(net: nn.Module) -> int:
    """Styles of a (possibly ``torch.compile``-wrapped) network: 1 unless it has conditional norms."""
    return int(getattr(unwrap_network(net), "num_styles", 1))


def export_onnx_model(net: nn.Module, f: str | os.PathLike[str] | IO[bytes]) -> None:
    """Export ``net`` to ONNX with dynamic batch, height and width (input ``image``, output ``stylized``; a
    multi-style network also takes ``style``, ``[S]`` float32 weights).

    Args:
        net: A registered style network (``stride`` and ``_forward_padded``); it is used in eval mode, fp32, CPU,
            unwrapped from ``torch.compile``. Not modified otherwise.
        f: Destination file path or binary file object (e.g. :class:`io.BytesIO`).
    """
    net = unwrap_network(net).eval().float().cpu()
    # Stride 1 (identity) needs no padding, and the network's own forward has no size arithmetic to freeze.
    graph = DynamicPadCrop(net) if int(net.stride) > 1 else net
    dynamic = {0: "batch", 2: "height", 3: "width"}
    styles = num_styles(net)
    example: tuple[torch.Tensor, ...] = (torch.rand(1, 3, *EXAMPLE_SIZE),)
    names = ["image"]
    if styles > 1:
        example, names = (*example, torch.full((styles,), 1.0 / styles)), ["image", "style"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about the (checked) size arithmetic
        # The TorchScript-based exporter: the dynamo one needs onnxscript and is not needed for these ops.
        torch.onnx.export(
            graph,
            example,
            f,
            input_names=names,
            output_names=["stylized"],
            dynamic_axes={"image": dynamic, "stylized": dynamic},
            opset_version=OPSET,
            dynamo=False,
        )


def onnx_bytes(net: nn.Module) -> bytes:
    """:func:`export_onnx_model` into memory; returns the serialized ONNX model."""
    buffer = io.BytesIO()
    export_onnx_model(net, buffer)
    return buffer.getvalue()


def make_session(model: bytes | str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU with full graph optimisation.

    Args:
        model: Serialized ONNX bytes or a ``.onnx`` path.
        threads: Intra-op threads; default ``torch.get_num_threads()`` (so ``torch.set_num_threads`` applies to both).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT otherwise warns about unused initializers on stderr
    # ORT's worker threads spin while idle by default; in stylize-video they would then steal the cores that the
    # decode and encode threads need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def cache_dir() -> Path:
    """Where exports are cached: ``$STYLETRAIN_ONNX_CACHE`` if set, else ``$XDG_CACHE_HOME/styletrain/onnx``, else
    ``~/.cache/styletrain/onnx``."""
    if os.environ.get("STYLETRAIN_ONNX_CACHE"):
        return Path(os.environ["STYLETRAIN_ONNX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "styletrain" / "onnx"


def cached_session(net: nn.Module, key: str, threads: int | None = None) -> Any:
    """A session for ``net``, exporting it only when the cache has no valid entry for ``key``.

    Args:
        net: The network (exported on a cache miss).
        key: Hex digest identifying the weights (the artifact file's sha256).
        threads: As for :func:`make_session`.

    A corrupt or unreadable entry is rebuilt; a cache folder that cannot be written only costs the export next time
    (logged). Entries are written atomically, so a crash never leaves a half-written model behind.
    """
    if not re.fullmatch(r"[0-9a-f]{16,128}", key):
        raise ValueError(f"cache key must be a hex digest, got {key!r}")
    path = cache_dir() / f"{key}-opset{OPSET}.onnx"
    if path.is_file():
        try:
            return make_session(path, threads)
        except Exception as exc:  # ORT raises its own exception types for invalid models
            log.warning("ONNX cache entry %s is unreadable (%s); exporting again", path, type(exc).__name__)
    model = onnx_bytes(net)
    session = make_session(model, threads)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, suffix=".onnx") as tmp:
            tmp.write_bytes(model)
    except (OSError, MediaError) as exc:
        log.warning("cannot cache the ONNX export in %s (%s)", path.parent, exc)
    return session


class OrtNetwork:
    """A torch style network exported once and run by ONNX Runtime; called like the network.

    Args:
        net: The torch network (kept: it still runs inputs smaller than ``2 * net.stride``, which the exported
            graph pads differently).
        threads: Intra-op threads (default ``torch.get_num_threads()``).
        cache_key: The weights' identity (an artifact's sha256): reuse or write the on-disk export cache
            (:func:`cached_session`); ``None`` exports into memory.

    A multi-style network is run with its current :attr:`~inference.model.networks.StyleNetwork.style_weights` (set with
    ``net.set_style``), read at every call, so changing the style between frames needs no new export.

    Raises:
        ImportError: ``onnx``/``onnxruntime`` missing. Any exporter error propagates (the caller may fall back).
    """

    def __init__(self, net: nn.Module, threads: int | None = None, cache_key: str | None = None) -> None:
        self.net = unwrap_network(net).eval().float().cpu()
        self.stride = int(self.net.stride)
        if cache_key is None:
            self.session = make_session(onnx_bytes(self.net), threads)
        else:
            self.session = cached_session(self.net, cache_key, threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``x``: float32 ``[B, 3, H, W]`` CPU tensor in [0, 1] (not modified) -> same shape, [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float tensor [B, 3, H, W], got {tuple(x.shape)} {x.dtype}")
        if min(x.shape[-2:]) < 2 * self.stride:
            with torch.no_grad():
                return self.net(x.float())
        feeds = {"image": np.ascontiguousarray(x.detach().cpu().float().numpy())}
        if num_styles(self.net) > 1:
            feeds["style"] = self.net.style_weights.detach().cpu().float().numpy()
        (out,) = self.session.run(["stylized"], feeds)
        return torch.from_numpy(out)
