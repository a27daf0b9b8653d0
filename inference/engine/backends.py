"""What runs a style network's forward pass: eager PyTorch, ``torch.compile`` (optionally with CUDA graphs) or ONNX
Runtime. :func:`build_forward` turns a prepared network into one callable, float ``[B, 3, H, W]`` in, same out; the
:class:`~inference.engine.stylizer.Stylizer` wraps colour, stroke scale and strength around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from inference.core.errors import OptionError, UserError
from inference.engine.strokes import stroke_scaled

log = logging.getLogger(__name__)

#: A forward pass: float ``[B, 3, H, W]`` RGB in [0, 1] in, same shape out.
Forward = Callable[[torch.Tensor], torch.Tensor]

BACKENDS = ("auto", "torch", "onnxruntime")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def compile_mode(compile: bool | str | None) -> str | None:
    """``False``/``None`` -> ``None``; ``True`` -> ``"default"``; a ``torch.compile`` mode name -> itself.

    Raises:
        UserError: Any other value (one line naming the modes).
    """
    if compile is False or compile is None:
        return None
    if compile is True:
        return "default"
    if compile not in COMPILE_MODES:
        raise UserError(f"unknown compile mode {compile!r}; use one of {', '.join(COMPILE_MODES)}")
    return str(compile)


def prepare(network: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    """``network`` for inference: eval mode, no gradients, on ``device`` in ``dtype``, NHWC when ``channels_last``."""
    network = network.eval().requires_grad_(False).to(device, dtype)
    return network.to(memory_format=torch.channels_last) if channels_last else network


def compiled(network: nn.Module, mode: str | None) -> Forward:
    """``network`` under ``torch.compile`` in ``mode``, or ``network`` itself when ``mode`` is ``None``.

    With ``"reduce-overhead"`` (CUDA graphs) each call starts a new graph step and clones the output: it lives in the
    graph's memory, which the next replay overwrites, so it must be copied before anything else reads it.
    """
    if mode is None:
        return network
    fn = torch.compile(network, mode=mode)
    if mode != "reduce-overhead":
        return fn

    def graphed(x: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return fn(x).clone()

    return graphed


def probe_runner(channels_last: bool, mode: str | None, scale: float = 1.0, detail: str = "none"):
    """How the precision probe (:func:`inference.engine.precision.choose_precision`) runs a cast copy of the network:
    with the frames' memory layout and stroke scale, since each changes which kernels run and so the reduced-precision
    error. Returns ``runner(network) -> forward``.

    ``mode`` (the compile mode) is accepted and deliberately not applied: the probe's copies would be compiled from
    the same class and so share its ``torch.compile`` cache, where three extra compilations use up recompile slots
    and mark the frame size dynamic before the real network compiles (a worker that then meets a few frame sizes
    falls back to eager without a word). The probe runs the copies eagerly; compiled kernels round within the
    tolerance's margin of the eager ones."""
    del mode

    def runner(net: nn.Module) -> Forward:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        net = net.to(memory_format=layout)
        return stroke_scaled(lambda x: net(x.contiguous(memory_format=layout)), scale, detail)

    return runner


def build_forward(
    network: nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    backend: str = "auto",
    *,
    compile: str | None = None,
    cache_key: str | None = None,
) -> tuple[Forward, str]:
    """The forward pass of ``network`` (already on ``device`` in ``dtype``, in eval mode) on the chosen backend.

    Args:
        network: The prepared style network.
        device: Where it runs; ONNX Runtime only on the CPU.
        dtype: Its parameters' dtype; ONNX Runtime only in fp32.
        backend: ``"torch"``, ``"onnxruntime"`` or ``"auto"``: ONNX Runtime when the device is the CPU, the dtype
            fp32, compile off, the network has parameters and the packages import, else torch. A failed export in
            auto mode logs a warning and falls back to torch.
        compile: A :func:`compile_mode` name, or ``None`` for eager.
        cache_key: The weights' sha256: the ONNX export is cached on disk under it (see
            :func:`inference.engine.onnx_backend.cached_session`); ``None``: exported on every start.

    Returns:
        ``(forward, resolved backend name)``.

    Raises:
        UserError: An unknown backend, or ``"onnxruntime"`` where it cannot run or its export fails (one line).
    """
    from inference.engine import onnx_backend

    mode = compile
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; use auto, torch or onnxruntime")
    eligible = device.type == "cpu" and dtype == torch.float32 and mode is None
    if backend == "onnxruntime":
        if not eligible:
            raise OptionError(
                "backend",
                "onnxruntime runs on the CPU in fp32 without `compile`; use `device` cpu",
                mentions=("compile", "device"),
            )
        if not onnx_backend.available():
            raise OptionError(
                "backend", "onnxruntime needs the onnxruntime and onnx packages (pip install onnx onnxruntime)"
            )
        try:
            return onnx_backend.OrtNetwork(network, cache_key=cache_key), "onnxruntime"
        except Exception as exc:  # the exporter raises many types
            raise UserError(
                f"ONNX export of the network failed ({type(exc).__name__}); use `backend` torch", mentions=("backend",)
            ) from None
    # A network without parameters (identity) has nothing for ONNX Runtime to speed up.
    has_weights = next(network.parameters(), None) is not None
    if backend == "auto" and eligible and has_weights and onnx_backend.available():
        try:
            return onnx_backend.OrtNetwork(network, cache_key=cache_key), "onnxruntime"
        except Exception as exc:  # the exporter raises many types; torch still runs the network
            log.warning("ONNX export failed, using PyTorch instead (%s: %s)", type(exc).__name__, str(exc)[:200])
    return compiled(network, mode), "torch"
