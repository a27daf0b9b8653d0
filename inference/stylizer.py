"""The Python API: :class:`Stylizer` runs a style network over images, frame iterables, whole videos and device
tensors.

Frames travel as ``uint8`` (RGB, or I420 planes at 1.5 bytes per pixel) all the way to the device, where they are
converted to float RGB, stylized, and converted back to ``uint8``. How batches are scheduled (synchronously, or on
CUDA with reused pinned buffers, copy streams and several batches in flight) is :mod:`inference.engines`; how the
precision is chosen (on CUDA by a parity check against fp32) is :mod:`inference.precision`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inference.colour import YuvSpec, blend, i420_to_rgb, preserve_color, rgb_to_i420, to_float, to_uint8
from inference.consistency import HOST_NOTE, ConsistencyStage, check_consistency
from inference.cuda_errors import is_out_of_memory, is_retryable_batch_error
from inference.engines import CudaEngine, HostEngine, Spans
from inference.errors import UserError
from inference.index_limit import PeakTensor
from inference.io.limits import MAX_BATCH_SIZE
from inference.precision import DTYPES, choose_precision
from inference.stages import StageClock
from inference.strokes import check_stroke_options, stroke_scaled
from inference.styles import StyleSpec, style_weights

if TYPE_CHECKING:
    from inference.artifact import ArtifactMetadata

log = logging.getLogger(__name__)

#: Batches in flight on CUDA: one uploading, one computing, one downloading.
CUDA_BATCHES_IN_FLIGHT = 3
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an explicit device that is not available is a :class:`UserError`."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"invalid device {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {device!r} requested but MPS is not available")
    return dev


class Stylizer:
    """Apply a style network to frames.

    Constructing a Stylizer changes no global state (cuDNN autotuning, thread counts and the like are the
    application's choice; ``stylize-video`` sets them).

    Args:
        network: A style network: float ``[B, 3, H, W]`` RGB in [0, 1] in, same out. Moved to the device and dtype.
        device: ``"auto"`` (cuda, then mps, then cpu), or any torch device string.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"``: on CUDA the lowest precision that passes a
            parity check against fp32 at load time (see :mod:`inference.precision`), fp32 elsewhere. How it was
            chosen is in :attr:`precision_report`.
        batch_size: Frames per forward pass; halved automatically when CUDA runs out of memory. ``None`` (auto):
            8 on CUDA, 1 elsewhere (a CPU gains nothing from wider batches; bench/inference.py measures both).
        channels_last: Run convolutions in NHWC layout (off by default; whether it is faster depends on the
            device and network: bench/inference.py measures it).
        compile: Wrap the network in ``torch.compile``: ``True`` for the default mode, or a mode name
            (``"reduce-overhead"`` uses CUDA graphs). Opt-in: slow first batch; whether it pays off is measured by
            bench/inference.py, not assumed.
        strength: 1 is the full style, 0 the original frame; values in between blend.
        preserve_color: Keep the input's colours, take only the luminance from the style.
        backend: ``"torch"``, ``"onnxruntime"`` (CPU, fp32 only; needs the ``onnxruntime`` and ``onnx`` packages)
            or ``"auto"``: ONNX Runtime when the device is the CPU, precision fp32, ``compile`` off, the network has
            parameters and the packages import, else torch. If the export fails in auto mode, a warning is logged
            and torch is used.
        metadata: The artifact header the network came from (:meth:`from_artifact` sets it); ``None`` otherwise.
        cache_key: A stable identity of the weights (the artifact's sha256): the ONNX export is then cached on disk
            under this key (see :func:`inference.onnx_backend.cached_session`) instead of redone on every start.
        stroke_scale: Run the network on the frame resized by ``1 / stroke_scale`` (in [0.25, 4]) and bring the
            result back to the frame's size, so strokes grow that many times (see :mod:`inference.strokes`);
            colour preservation and strength still use the full-size frame. 1 is the plain path.
        stroke_detail: ``"none"`` or ``"guided"``: restore the frame's luminance detail lost when enlarging.
        style: Which style of a multi-style network: ``None`` (the first), a name (``"starry"``), a blend spec
            (``"starry:0.3,wave:0.7"``) or a mapping (``{"starry": 0.3, "wave": 0.7}``); see :meth:`set_style`.
        consistency: Temporal consistency in [0, 1] for frame sequences (:meth:`frames`, :meth:`video`,
            :meth:`process`): each output is pulled towards the previous output moved by the input's optical flow
            where the pixel stayed visible (:mod:`inference.consistency`). 0 (the API default) is off and
            bit-identical to per-frame output; ``stylize-video`` defaults to
            :data:`inference.cli.DEFAULT_CONSISTENCY`. :meth:`tensors` and :meth:`image` stay per-frame.

    Attributes:
        metadata: As given (always present; ``None`` when not built from an artifact).
        precision_report: A :class:`~inference.precision.PrecisionReport`: the precision, why, and the parity errors.
        backend: ``"torch"`` or ``"onnxruntime"``, as resolved.
        style_names: The network's style names in order (from the metadata; ``"0"``, ``"1"``, ... without it).
        style_weights: The current weight of each style (non-negative, summing to 1).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        channels_last: bool = False,
        compile: bool | str = False,
        strength: float = 1.0,
        preserve_color: bool = False,
        backend: str = "auto",
        metadata: ArtifactMetadata | None = None,
        cache_key: str | None = None,
        stroke_scale: float = 1.0,
        stroke_detail: str = "none",
        style: StyleSpec | None = None,
        consistency: float = 0.0,
    ) -> None:
        check_stroke_options(stroke_scale, stroke_detail)
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"--strength must be in [0, 1], got {strength}")
        if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise UserError(f"--batch-size must be in [1, {MAX_BATCH_SIZE}], got {batch_size}")
        self.metadata = metadata
        self.style_names = _style_names(network, metadata)
        self.style_weights = style_weights(style, self.style_names)
        self.device = resolve_device(device)
        self._cuda = self.device.type == "cuda"
        self.batch_size = int(batch_size) if batch_size is not None else (8 if self._cuda else 1)
        self.strength = float(strength)
        self.preserve_color = bool(preserve_color)
        self.channels_last = channels_last
        self._compile_mode = _compile_mode(compile)
        self.compiled = self._compile_mode is not None
        self.index_limited = self._cuda  # only CUDA kernels index with 32 bits (inference.index_limit)
        self._peak: PeakTensor | None = None
        self._index_caps: dict[tuple[int, int, float], int] = {}
        if len(self.style_names) > 1:
            network.set_style(self.style_weights)  # the parity probe must see the style the frames will get
        runner = self._probe_runner(stroke_scale, stroke_detail)
        self.precision_report = choose_precision(network, precision, self.device, runner)
        self.dtype = DTYPES[self.precision_report.chosen]
        network = network.eval().requires_grad_(False).to(self.device, self.dtype)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self.set_style(style)
        self.consistency = check_consistency(consistency)
        if self.consistency > 0 and self.device.type != "cpu":
            log.info(HOST_NOTE)  # no device flow yet: DIS on the CPU, overlapped with the device's work
        self._forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(network, mode=self._compile_mode) if self.compiled else network
        )
        self.backend = self._select_backend(backend, cache_key)
        # Around the backend (torch, compiled or ONNX Runtime): the resizing runs in torch on the device.
        self._backend_forward = self._forward
        self.set_strokes(stroke_scale, stroke_detail)

    def _probe_runner(self, scale: float, detail: str) -> Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]:
        """How the precision probe runs a cast copy of the network: with the frames' memory layout, compile mode and
        stroke scale, since each changes which kernels run and so the reduced-precision error."""

        def runner(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            net = net.to(memory_format=layout)
            # With compile, each probed precision compiles its own copy: a slower start, which compile has anyway.
            compiled = torch.compile(net, mode=self._compile_mode) if self.compiled else net
            return stroke_scaled(lambda x: compiled(x.contiguous(memory_format=layout)), scale, detail)

        return runner

    def _select_backend(self, backend: str, cache_key: str | None) -> str:
        """Resolve ``backend`` and, for ONNX Runtime, replace ``self._forward`` with the exported network."""
        from inference import onnx_backend

        if backend not in ("auto", "torch", "onnxruntime"):
            raise UserError(f"unknown backend {backend!r}; use auto, torch or onnxruntime")
        if backend == "torch":
            return "torch"
        eligible = self.device.type == "cpu" and self.dtype == torch.float32 and not self.compiled
        if backend == "onnxruntime":
            if not eligible:
                raise UserError("--backend onnxruntime runs on the CPU in fp32 without --compile; use --device cpu")
            if not onnx_backend.available():
                raise UserError(
                    "--backend onnxruntime needs the onnxruntime and onnx packages (pip install onnx onnxruntime)"
                )
            try:
                self._forward = onnx_backend.OrtNetwork(self.network, cache_key=cache_key)
            except Exception as exc:  # the exporter raises many types
                raise UserError(
                    f"ONNX export of the network failed ({type(exc).__name__}); use --backend torch"
                ) from None
            return "onnxruntime"
        # A network without parameters (identity) has nothing for ONNX Runtime to speed up.
        has_weights = next(self.network.parameters(), None) is not None
        if not (eligible and has_weights and onnx_backend.available()):
            return "torch"
        try:
            self._forward = onnx_backend.OrtNetwork(self.network, cache_key=cache_key)
        except Exception as exc:  # the exporter raises many types; torch still runs the network
            log.warning("ONNX export failed, using PyTorch instead (%s: %s)", type(exc).__name__, str(exc)[:200])
            return "torch"
        return "onnxruntime"

    def set_style(self, style: StyleSpec | None) -> None:
        """Choose or blend the styles of a multi-style network; the frames computed after the call use it.

        Blends interpolate the per-style normalisation parameters, so any mixture costs the same as one style, on
        every backend (ONNX Runtime takes the weights as an input: no new export).

        Args:
            style: ``None`` (the first style), a style name, a ``"a:0.3,b:0.7"`` spec or a name -> weight mapping;
                weights are normalised to sum to 1. A single-style network accepts only its own name.

        Raises:
            UserError: Unknown name (the message lists the available ones), negative or non-finite weight, or a zero
                total (one line).
        """
        self.style_weights = style_weights(style, self.style_names)
        if len(self.style_names) > 1:
            self.network.set_style(self.style_weights)

    def set_strokes(self, scale: float = 1.0, detail: str = "none") -> None:
        """Change the stroke scale and detail mode (see :mod:`inference.strokes`); the frames computed after the call
        use them. No re-export or recompile: only the resizing around the backend changes.

        Raises:
            UserError: ``scale`` outside [0.25, 4] or an unknown ``detail`` (one line).
        """
        self._forward = stroke_scaled(self._backend_forward, scale, detail)
        self.stroke_scale, self.stroke_detail = float(scale), detail

    @classmethod
    def from_artifact(cls, path: str | Path, **kwargs: Any) -> Stylizer:
        """Load an exported ``.safetensors`` artifact (see :func:`inference.artifact.load_artifact`).

        Args:
            path: The artifact file.
            **kwargs: Constructor options (``device``, ``precision``, ``batch_size``, ``style``, ...).
        """
        from inference.artifact import load_artifact

        artifact = load_artifact(path, device="cpu")
        with open(artifact.path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return cls(artifact.network, metadata=artifact.metadata, cache_key=digest, **kwargs)

    # ----------------------------------------------------------------------------------------------- public API
    def image(self, array: np.ndarray) -> np.ndarray:
        """Stylize one image.

        Args:
            array: ``uint8 [H, W, 3]`` RGB (``[H, W]`` grey and ``[H, W, 4]`` RGBA are accepted too).

        Returns:
            ``uint8 [H, W, 3]`` RGB.
        """
        return next(self.frames([array]))

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stylize a sequence lazily, in batches, keeping the order.

        Args:
            frames: ``uint8 [H, W, 3]`` RGB arrays; consecutive frames of the same size are batched together.

        Yields:
            ``uint8 [H, W, 3]`` RGB arrays, one per input frame.
        """
        for out, _ in self.process((_as_rgb(f), None) for f in frames):
            yield out

    def video(self, src: str, dst: str, **options: Any):
        """Stylize a video, image, frame folder or glob into a video, GIF, frame folder or image.

        See :func:`inference.convert.stylize_file` for the options (``overwrite``, ``start``, ``duration``,
        ``size``, ``max_side``, ``crf``, ``preset``, ``codec``, ``gif_fps``, ``gif_width``, ``progress``...).

        Returns:
            A :class:`inference.convert.StylizeResult` (output path, frame count, fps, warnings).
        """
        from inference.convert import stylize_file

        return stylize_file(self, src, dst, **options)

    def tensors(
        self, batch: torch.Tensor, *, yuv_in: YuvSpec | None = None, yuv_out: YuvSpec | None = None
    ) -> torch.Tensor:
        """Stylize a batch that is already a tensor (e.g. from a GPU decoder); the result stays on the device.

        Work is queued on the device's current stream in chunks of ``batch_size``; nothing waits for it.

        Args:
            batch: On any device (moved to the Stylizer's): ``uint8 [B, H, W, 3]`` RGB, float ``[B, 3, H, W]`` RGB
                in [0, 1], or with ``yuv_in`` ``uint8 [B, H * 3 / 2, W]`` I420 planes. Not modified.
            yuv_in: The planes' matrix and range, for I420 input.
            yuv_out: Return I420 planes in this matrix and range instead of RGB.

        Returns:
            On the Stylizer's device: I420 ``uint8 [B, H * 3 / 2, W]`` with ``yuv_out``; else float input gives
            ``[B, 3, H, W]`` in [0, 1] in the input's dtype, and uint8 input gives ``uint8 [B, H, W, 3]``.

        Raises:
            UserError: A shape or dtype that is none of the above.
        """
        _check_tensor(batch, yuv_in)
        batch = batch.to(self.device, non_blocking=True)
        float_dtype = batch.dtype if batch.is_floating_point() else None
        spans = Spans(None, cuda=False)
        self._index_cap(*_tensor_frame_size(batch, yuv_in))  # lowers batch_size on CUDA: tensors under 2^31 elements
        step = self.batch_size
        chunks = [
            self._compute(batch[i : i + step], spans, yuv_in, yuv_out, float_dtype)
            for i in range(0, batch.shape[0], step)
        ]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    # ------------------------------------------------------------------------------------------------ batching
    def process(
        self,
        items: Iterable[tuple[np.ndarray, Any]],
        *,
        yuv_in: YuvSpec | None = None,
        yuv_out: YuvSpec | None = None,
        clock: StageClock | None = None,
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Stylize ``(array, meta)`` pairs in batches; yields ``(stylized, meta)`` in input order.

        Args:
            items: ``(frame, meta)`` pairs. A frame is ``uint8 [H, W, 3]`` RGB, or with ``yuv_in`` ``uint8
                [H * 3 / 2, W]`` I420 planes (FFmpeg's ``yuv420p`` layout), converted to RGB on the device.
            yuv_in: The input planes' matrix and range; ``None`` for RGB frames.
            yuv_out: Return I420 planes in this matrix and range (converted on the device); ``None`` for RGB.
            clock: Accumulates busy time per stage (upload, colour, network, colour back, download): CUDA events on
                CUDA (read when a batch is collected anyway, so timing adds no synchronisation), host time elsewhere.

        Yields:
            ``(frame, meta)``: ``uint8 [H, W, 3]`` RGB, or ``uint8 [H * 3 / 2, W]`` I420 with ``yuv_out``. Every
            frame is the caller's to keep: it is never a view into a buffer the Stylizer reuses.

        On CUDA up to :data:`CUDA_BATCHES_IN_FLIGHT` batches are in flight (see :class:`inference.engines.CudaEngine`),
        so stacking, copies and the caller's handling of earlier frames overlap GPU compute.
        """
        if self.consistency > 0:
            if yuv_in is not None or yuv_out is not None:
                raise UserError("consistency works on RGB frames: call process() without yuv_in/yuv_out")
            stage = ConsistencyStage(self.consistency, clock=clock)
            yield from stage.run(items, partial(self._per_frame, yuv_in=None, yuv_out=None, clock=clock))
        else:
            yield from self._per_frame(items, yuv_in=yuv_in, yuv_out=yuv_out, clock=clock)

    def _per_frame(self, items: Iterable, *, yuv_in, yuv_out, clock: StageClock | None) -> Iterator:
        """:meth:`process` without the consistency stage: batches through the engine."""
        engine: HostEngine | CudaEngine = (
            CudaEngine(self.device, clock, CUDA_BATCHES_IN_FLIGHT) if self._cuda else HostEngine(self.device, clock)
        )
        compute = partial(self._compute, yuv_in=yuv_in, yuv_out=yuv_out, float_dtype=None)
        try:
            for arrays, metas in _batches(items, lambda: self.batch_size):
                yield from self._submit(engine, arrays, metas, compute)
            yield from engine.drain()
        finally:
            engine.close()

    def _submit(self, engine: HostEngine | CudaEngine, arrays: list[np.ndarray], metas: list, compute) -> Iterator:
        """Submit a batch; on out-of-memory or a 32-bit index overflow halve the batch size and retry in smaller
        pieces (see :mod:`inference.cuda_errors`). On CUDA the batch is first capped so that no tensor of the network
        exceeds 2^31 elements (:mod:`inference.index_limit`)."""
        n = len(arrays)
        h, w = _frame_size(arrays[0])
        cap = self._index_cap(h, w)
        if n > cap:
            for i in range(0, n, cap):
                yield from self._submit(engine, arrays[i : i + cap], metas[i : i + cap], compute)
            return
        if self.compiled and n < self.batch_size:
            # A fixed batch shape avoids recompiling for the last, partial batch.
            arrays = arrays + [arrays[-1]] * (self.batch_size - n)
        try:
            yield from engine.submit(arrays, metas, n, compute)
        except Exception as exc:
            if not is_retryable_batch_error(exc):
                raise
            what = "out of GPU memory" if is_out_of_memory(exc) else "over CUDA's 32-bit index limit"
            if n == 1:
                raise UserError(f"{what} even for one {w}x{h} frame; use --max-side or --size") from None
            if self._cuda:
                torch.cuda.empty_cache()
            self.batch_size = half = max(1, n // 2)
            log.warning("%s: batch size reduced to %d", what, self.batch_size)
            yield from self._submit(engine, arrays[:half], metas[:half], compute)
            yield from self._submit(engine, arrays[half:n], metas[half:], compute)

    def _index_cap(self, height: int, width: int) -> int:
        """The most frames of this size per batch that keep every network tensor under 2^31 elements (on CUDA;
        elsewhere the batch size). Lowers :attr:`batch_size` to it, so later batches are formed at that size."""
        if not self.index_limited:
            return self.batch_size
        key = (height, width, self.stroke_scale)
        if key not in self._index_caps:
            if self._peak is None:
                self._peak = PeakTensor(self.network)
            self._index_caps[key] = self._peak.max_batch(height, width, self.stroke_scale)
            if self._index_caps[key] < self.batch_size:
                log.info("batch size %d -> %d for %dx%d frames (32-bit index limit)", self.batch_size,
                         self._index_caps[key], width, height)  # fmt: skip
        cap = self._index_caps[key]
        self.batch_size = min(self.batch_size, cap)
        return cap

    # ---------------------------------------------------------------------------------------- device compute
    def _compute(
        self,
        batch: torch.Tensor,
        spans: Spans,
        yuv_in: YuvSpec | None,
        yuv_out: YuvSpec | None,
        float_dtype: torch.dtype | None,
    ) -> torch.Tensor:
        """Colour, network and colour back for one batch on the device (see :meth:`tensors` for the formats)."""
        with torch.inference_mode():
            with spans.span("colour"):
                x = self._to_network_input(batch, yuv_in)
            with spans.span("network"):
                y = self.run_network(x)
            with spans.span("colour back"):
                if yuv_out is not None:
                    return rgb_to_i420(y, yuv_out)
                if float_dtype is not None:
                    return y.to(float_dtype, copy=True)  # never the caller's own tensor (identity, strength 0)
                return to_uint8(y).permute(0, 2, 3, 1).contiguous()

    def _to_network_input(self, batch: torch.Tensor, yuv_in: YuvSpec | None) -> torch.Tensor:
        """I420 planes, ``uint8 [B, H, W, 3]`` or float ``[B, 3, H, W]`` -> float ``[B, 3, H, W]`` in ``self.dtype``."""
        if yuv_in is not None:
            x = i420_to_rgb(batch, yuv_in, self.dtype)
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        if batch.is_floating_point():
            x = batch.to(self.dtype)
        else:
            # NHWC uint8 permuted to NCHW *is* channels_last in memory; the conversion keeps that layout.
            x = to_float(batch.permute(0, 3, 1, 2), self.dtype)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """The network alone as this Stylizer runs it (backend, precision, layout, compile), then colour preservation
        and strength. This is what "model only" benchmarks time.

        Args:
            x: Float ``[B, 3, H, W]`` RGB in [0, 1] on the Stylizer's device, in ``self.dtype``; not modified.

        Returns:
            ``[B, 3, H, W]`` RGB in [0, 1].
        """
        if self._compile_mode == "reduce-overhead":
            # CUDA graphs: each call starts a new step; the output lives in the graph's memory, which the next
            # replay overwrites, so it is cloned before anything else reads it.
            torch.compiler.cudagraph_mark_step_begin()
            y = self._forward(x).clone()
        else:
            y = self._forward(x)
        if self.preserve_color:
            y = preserve_color(y, x)
        return blend(y, x, self.strength)


def _style_names(network: nn.Module, metadata: ArtifactMetadata | None) -> list[str]:
    """The style names: the artifact's, else ``"0"``, ``"1"``, ... for a network built in Python."""
    if metadata is not None and metadata.styles:
        return metadata.style_names
    return [str(i) for i in range(int(getattr(network, "num_styles", 1)))]


def _compile_mode(compile: bool | str) -> str | None:
    """``False`` -> ``None``; ``True`` -> ``"default"``; a ``torch.compile`` mode name -> itself."""
    if compile is False or compile is None:
        return None
    if compile is True:
        return "default"
    if compile not in _COMPILE_MODES:
        raise UserError(f"unknown compile mode {compile!r}; use one of {', '.join(_COMPILE_MODES)}")
    return str(compile)


def _check_tensor(batch: torch.Tensor, yuv_in: YuvSpec | None) -> None:
    """Raise :class:`UserError` unless ``batch`` is one of the formats :meth:`Stylizer.tensors` accepts."""
    shape = list(batch.shape) if isinstance(batch, torch.Tensor) else None
    if shape is None:
        raise UserError(f"expected a torch tensor, got {type(batch).__name__}")
    if yuv_in is not None:
        # H * 3 / 2 rows with H even: exactly the row counts that are multiples of 3 (H = 2 k gives 3 k rows, any
        # k; requiring a multiple of 6 would refuse H = 2 mod 4, such as 1280x534).
        if batch.dtype != torch.uint8 or batch.dim() != 3 or shape[1] % 3 or shape[2] % 2:
            raise UserError(f"I420 input must be uint8 [B, H * 3 / 2, W] with H and W even, got {shape} {batch.dtype}")
    elif batch.dtype == torch.uint8:
        if batch.dim() != 4 or shape[3] != 3:
            raise UserError(f"uint8 RGB input must be [B, H, W, 3], got {shape}")
    elif batch.is_floating_point():
        if batch.dim() != 4 or shape[1] != 3:
            raise UserError(f"float RGB input must be [B, 3, H, W], got {shape}")
    else:
        raise UserError(f"expected uint8 or floating tensors, got {batch.dtype}")
    if shape[0] < 1:
        raise UserError("the batch is empty")


def _frame_size(array: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of an RGB ``[H, W, 3]`` frame or of ``[H * 3 / 2, W]`` I420 planes."""
    return (array.shape[0], array.shape[1]) if array.ndim == 3 else (array.shape[0] * 2 // 3, array.shape[1])


def _tensor_frame_size(batch: torch.Tensor, yuv_in: YuvSpec | None) -> tuple[int, int]:
    """``(height, width)`` of the frames of a :meth:`Stylizer.tensors` batch (I420, float NCHW or uint8 NHWC)."""
    if yuv_in is not None:
        return int(batch.shape[1]) * 2 // 3, int(batch.shape[2])
    if batch.is_floating_point():
        return int(batch.shape[2]), int(batch.shape[3])
    return int(batch.shape[1]), int(batch.shape[2])


def _batches(items: Iterable[tuple[np.ndarray, Any]], size) -> Iterator[tuple[list[np.ndarray], list]]:
    """Group consecutive same-shaped items into lists of at most ``size()`` (re-read each time: it may shrink)."""
    arrays: list[np.ndarray] = []
    metas: list = []
    for array, meta in items:
        if arrays and (len(arrays) >= size() or array.shape != arrays[0].shape):
            yield arrays, metas
            arrays, metas = [], []
        arrays.append(array)
        metas.append(meta)
    if arrays:
        yield arrays, metas


def _as_rgb(array: np.ndarray) -> np.ndarray:
    """Validate a caller's frame and return it as ``uint8 [H, W, 3]`` (grey and RGBA converted, never modified)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise UserError(f"frames must be uint8 arrays, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise UserError(f"frames must have shape [H, W, 3], got {list(array.shape)}")
    return array[..., :3]
