"""A style network made ready to run: its precision chosen, moved and cast, and its forward pass built on the backend
the :class:`~inference.engine.options.RuntimeOptions` ask for (the first half of making a
:class:`~inference.engine.stylizer.Stylizer`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inference.engine.backends import Forward, build_forward, compile_mode, prepare, probe_runner
from inference.engine.options import RuntimeOptions
from inference.engine.precision import DTYPES, PrecisionReport, choose_precision


@dataclass(frozen=True)
class ReadyNetwork:
    """A style network ready to run: on its device, in its precision and memory layout, behind its backend.

    Attributes:
        network: The module as it runs (moved, cast, in eval mode).
        forward: The backend's forward pass: float ``[B, 3, H, W]`` in ``dtype`` on the device, same out.
        backend: ``"torch"`` or ``"onnxruntime"``.
        dtype: The float type it runs in.
        precision_report: The precision, why, and the parity errors (:mod:`inference.engine.precision`).
        compiled: Whether ``torch.compile`` is on (it keeps one batch shape, so the last batch is padded).
    """

    network: nn.Module
    forward: Forward
    backend: str
    dtype: torch.dtype
    precision_report: PrecisionReport
    compiled: bool


def ready_network(
    network: nn.Module, options: RuntimeOptions, device: torch.device, cache_key: str | None = None
) -> ReadyNetwork:
    """Choose the precision (a parity check on CUDA, run the way the frames will run: layout and stroke scale), move
    and cast ``network``, and build its forward pass on the backend ``options`` ask for.

    Raises:
        UserError: A precision or backend that cannot run here (one line).
    """
    mode = compile_mode(options.compile)
    runner = probe_runner(options.channels_last, mode, options.stroke_scale, options.stroke_detail)
    report = choose_precision(network, options.precision, device, runner)
    dtype = DTYPES[report.chosen]
    network = prepare(network, device, dtype, options.channels_last)
    forward, backend = build_forward(network, device, dtype, options.backend, compile=mode, cache_key=cache_key)
    return ReadyNetwork(network, forward, backend, dtype, report, mode is not None)
