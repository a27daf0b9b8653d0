"""The Python API: :class:`Stylizer` runs a style network over images, frame iterables, whole videos and device
tensors.

Frames travel as ``uint8`` (RGB, or I420 planes at 1.5 bytes per pixel) all the way to the device, where they are
converted to float RGB, stylized, and converted back to ``uint8``. The Stylizer only stylizes; each other concern has
a module of its own: the device (:func:`inference.core.devices.resolve_device`), the precision (on CUDA by a parity
check against fp32, :mod:`inference.engine.precision`), the backend (eager, compiled or ONNX Runtime,
:mod:`inference.engine.backends`), the frame formats (:mod:`inference.engine.frame_formats`), forming batches and
shrinking them on device errors (:mod:`inference.engine.batching`) and how batches are scheduled (synchronously, or on
CUDA with reused pinned buffers, copy streams and several batches in flight: :mod:`inference.engine.engines`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from inference.core.colour import YuvSpec, blend, preserve_color
from inference.core.devices import resolve_device
from inference.core.errors import UserError
from inference.core.hashing import sha256_of_file
from inference.core.stages import StageClock
from inference.engine.backends import build_forward, compile_mode, probe_runner
from inference.engine.batching import CUDA_BATCHES_IN_FLIGHT, Batcher, make_engine
from inference.engine.consistency import HOST_NOTE, ConsistencyStage, check_consistency
from inference.engine.engines import Spans
from inference.engine.frame_formats import (
    as_rgb,
    check_tensor,
    from_network_output,
    tensor_frame_size,
    to_network_input,
)
from inference.engine.precision import DTYPES, choose_precision
from inference.engine.strokes import check_stroke_options, stroke_scaled
from inference.io.limits import MAX_BATCH_SIZE
from inference.model.styles import StyleSpec, style_weights

if TYPE_CHECKING:
    from inference.model.artifact import ArtifactMetadata

# Re-exported: callers import these from here.
__all__ = ["CUDA_BATCHES_IN_FLIGHT", "Stylizer"]

log = logging.getLogger(__name__)


class Stylizer:
    """Apply a style network to frames.

    Constructing a Stylizer changes no global state (cuDNN autotuning, thread counts and the like are the
    application's choice; ``stylize-video`` sets them).

    Args:
        network: A style network: float ``[B, 3, H, W]`` RGB in [0, 1] in, same out. Moved to the device and dtype.
        device: ``"auto"`` (cuda, then mps, then cpu), or any torch device string (see
            :func:`~inference.core.devices.resolve_device`).
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"``: on CUDA the lowest precision that passes a
            parity check against fp32 at load time (see :mod:`inference.engine.precision`), fp32 elsewhere. How it was
            chosen is in :attr:`precision_report`.
        batch_size: Frames per forward pass; halved automatically when CUDA runs out of memory (see
            :mod:`inference.engine.batching`). ``None`` (auto): 8 on CUDA, 1 elsewhere (a CPU gains nothing from wider
            batches; bench/inference.py measures both).
        channels_last: Run convolutions in NHWC layout (off by default; whether it is faster depends on the
            device and network: bench/inference.py measures it).
        compile: Wrap the network in ``torch.compile``: ``True`` for the default mode, or a mode name
            (:func:`~inference.engine.backends.compile_mode`). Opt-in: slow first batch; whether it pays off is measured
            by bench/inference.py, not assumed.
        strength: 1 is the full style, 0 the original frame; values in between blend.
        preserve_color: Keep the input's colours, take only the luminance from the style.
        backend: ``"torch"``, ``"onnxruntime"`` (CPU, fp32 only; needs the ``onnxruntime`` and ``onnx`` packages)
            or ``"auto"`` (ONNX Runtime where it can run, else torch): see
        :func:`~inference.engine.backends.build_forward`. metadata: The artifact header the network came from
        (:meth:`from_artifact` sets it); ``None`` otherwise. cache_key: A stable identity of the weights (the artifact's
            sha256): the ONNX export is then cached on disk under this key (see
        :func:`inference.engine.onnx_backend.cached_session`) instead of redone on every start. stroke_scale: Run the
            network on the frame resized by ``1 / stroke_scale`` (in [0.25, 4]) and bring the result back to the frame's
            size, so strokes grow that many times (see :mod:`inference.engine.strokes`); colour preservation and
        strength still use the full-size frame. 1 is the plain path. stroke_detail: ``"none"`` or ``"guided"``: restore
        the frame's luminance detail lost when enlarging. style: Which style of a multi-style network: ``None`` (the
            first), a name (``"starry"``), a blend spec (``"starry:0.3,wave:0.7"``) or a mapping (``{"starry": 0.3,
        "wave": 0.7}``); see :meth:`set_style`. consistency: Temporal consistency in [0, 1] for frame sequences
            (:meth:`frames`, :meth:`video`, :meth:`process`): each output is pulled towards the previous output moved by
            the input's optical flow where the pixel stayed visible (:mod:`inference.engine.consistency`). 0 (the API
            default) is off and bit-identical to per-frame output; ``stylize-video`` defaults to
            :data:`inference.app.cli.DEFAULT_CONSISTENCY`. :meth:`tensors` and :meth:`image` stay per-frame.

    Attributes:
        metadata: As given (always present; ``None`` when not built from an artifact).
        precision_report: A :class:`~inference.engine.precision.PrecisionReport`: the precision, why, and the parity
        errors. backend: ``"torch"`` or ``"onnxruntime"``, as resolved.
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
        self.strength, self.preserve_color = float(strength), bool(preserve_color)
        self.channels_last = channels_last
        self._compile_mode = compile_mode(compile)
        self.compiled = self._compile_mode is not None
        if len(self.style_names) > 1:
            network.set_style(self.style_weights)  # the parity probe must see the style the frames will get
        runner = probe_runner(channels_last, self._compile_mode, stroke_scale, stroke_detail)
        self.precision_report = choose_precision(network, precision, self.device, runner)
        self.dtype = DTYPES[self.precision_report.chosen]
        self.network = _prepare(network, self.device, self.dtype, channels_last)
        self.set_style(style)
        self.consistency = check_consistency(consistency)
        if self.consistency > 0 and self.device.type != "cpu":
            log.info(HOST_NOTE)  # no device flow yet: DIS on the CPU, overlapped with the device's work
        # Around the backend (torch, compiled or ONNX Runtime): the resizing runs in torch on the device.
        self._backend_forward, self.backend = build_forward(
            self.network, self.device, self.dtype, backend, compile=self._compile_mode, cache_key=cache_key
        )
        cuda = self.device.type == "cuda"
        size = int(batch_size) if batch_size is not None else (8 if cuda else 1)
        # Only CUDA kernels index with 32 bits (inference.engine.index_limit); a compiled network keeps one batch shape.
        self._batcher = Batcher(size, self.network, index_limited=cuda, pad=self.compiled, cuda=cuda)
        self.set_strokes(stroke_scale, stroke_detail)

    @property
    def batch_size(self) -> int:
        """Frames per forward pass: as configured, lowered for good by out-of-memory and index-limit retries (once the
        pass that had to lower it ends; see :mod:`inference.engine.batching`)."""
        return self._batcher.size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        self._batcher.size = int(size)

    @property
    def index_limited(self) -> bool:
        """Whether batches are capped under 32-bit index math (on CUDA)."""
        return self._batcher.index_limited

    @index_limited.setter
    def index_limited(self, limited: bool) -> None:
        self._batcher.index_limited = bool(limited)

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
        """Change the stroke scale and detail mode (see :mod:`inference.engine.strokes`); the frames computed after the
        call use them. No re-export or recompile: only the resizing around the backend changes.

        Raises:
            UserError: ``scale`` outside [0.25, 4] or an unknown ``detail`` (one line).
        """
        self._forward = stroke_scaled(self._backend_forward, scale, detail)
        self.stroke_scale, self.stroke_detail = float(scale), detail
        self._batcher.scale = self.stroke_scale

    @classmethod
    def from_artifact(cls, path: str | Path, **kwargs: Any) -> Stylizer:
        """Load an exported ``.safetensors`` artifact (see :func:`inference.model.artifact.load_artifact`).

        Args:
            path: The artifact file.
            **kwargs: Constructor options (``device``, ``precision``, ``batch_size``, ``style``, ...).
        """
        from inference.model.artifact import load_artifact

        artifact = load_artifact(path, device="cpu")
        digest = sha256_of_file(artifact.path)
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
        for out, _ in self.process((as_rgb(f), None) for f in frames):
            yield out

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
        check_tensor(batch, yuv_in)
        batch = batch.to(self.device, non_blocking=True)
        float_dtype = batch.dtype if batch.is_floating_point() else None
        spans = Spans(None, cuda=False)
        self._batcher.cap(*tensor_frame_size(batch, yuv_in))  # lowers batch_size on CUDA: tensors under 2^31 elements
        step = self.batch_size
        chunks = [
            self._compute(batch[i : i + step], spans, yuv_in, yuv_out, float_dtype)
            for i in range(0, batch.shape[0], step)
        ]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

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

        On CUDA up to :data:`~inference.engine.batching.CUDA_BATCHES_IN_FLIGHT` batches are in flight (see
        :class:`inference.engine.engines.CudaEngine`), so stacking, copies and the caller's handling of earlier frames
        overlap GPU compute.
        """
        if self.consistency > 0:
            if yuv_in is not None or yuv_out is not None:
                raise UserError("consistency works on RGB frames: call process() without yuv_in/yuv_out")
            stage = ConsistencyStage(self.consistency, clock=clock)
            yield from stage.run(items, partial(self._per_frame, yuv_in=None, yuv_out=None, clock=clock))
        else:
            yield from self._per_frame(items, yuv_in=yuv_in, yuv_out=yuv_out, clock=clock)

    def _per_frame(self, items: Iterable, *, yuv_in, yuv_out, clock: StageClock | None) -> Iterator:
        """:meth:`process` without the consistency stage: batches through the device's engine."""
        compute = partial(self._compute, yuv_in=yuv_in, yuv_out=yuv_out, float_dtype=None)
        yield from self._batcher.run(make_engine(self.device, clock), items, compute)

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
                x = to_network_input(batch, yuv_in, self.dtype, self.channels_last)
            with spans.span("network"):
                y = self.run_network(x)
            with spans.span("colour back"):
                return from_network_output(y, yuv_out, float_dtype)

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """The network alone as this Stylizer runs it (backend, precision, layout, compile), then colour preservation
        and strength. This is what "model only" benchmarks time.

        Args:
            x: Float ``[B, 3, H, W]`` RGB in [0, 1] on the Stylizer's device, in ``self.dtype``; not modified.

        Returns:
            ``[B, 3, H, W]`` RGB in [0, 1].
        """
        y = self._forward(x)
        if self.preserve_color:
            y = preserve_color(y, x)
        return blend(y, x, self.strength)


def _style_names(network: nn.Module, metadata: ArtifactMetadata | None) -> list[str]:
    """The style names: the artifact's, else ``"0"``, ``"1"``, ... for a network built in Python."""
    if metadata is not None and metadata.styles:
        return metadata.style_names
    return [str(i) for i in range(int(getattr(network, "num_styles", 1)))]


def _prepare(network: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    """``network`` for inference: eval mode, no gradients, on ``device`` in ``dtype``, NHWC when ``channels_last``."""
    network = network.eval().requires_grad_(False).to(device, dtype)
    return network.to(memory_format=torch.channels_last) if channels_last else network
