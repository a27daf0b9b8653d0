"""The Python API: :class:`Stylizer` runs a style network over images, frame iterables and device tensors (files:
:func:`inference.app.convert.stylize_file`).

Frames travel as ``uint8`` (RGB, or I420 planes at 1.5 bytes per pixel) all the way to the device, where they are
converted to float RGB, stylized, and converted back to ``uint8``. The Stylizer only stylizes; each other concern has a
module of its own: its options and their ranges (:mod:`inference.engine.options`), one batch's colour, network, colour
preservation and strength (:mod:`inference.engine.batch_step`), the device
(:func:`inference.core.devices.resolve_device`), the precision (on CUDA by a parity check against fp32,
:mod:`inference.engine.precision`), the backend (eager, compiled or ONNX Runtime, :mod:`inference.engine.backends`), the
frame formats (:mod:`inference.engine.frame_formats`), forming batches and shrinking them on device errors
(:mod:`inference.engine.batching`) and how batches are scheduled (synchronously, or on CUDA with reused pinned buffers,
copy streams and several batches in flight: :mod:`inference.engine.engines`).
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

from inference.core.colour import YuvSpec
from inference.core.devices import resolve_device
from inference.core.errors import UserError
from inference.core.hashing import sha256_of_file
from inference.core.stages import StageClock
from inference.engine.batch_step import BatchStep
from inference.engine.batching import Batcher, make_engine
from inference.engine.consistency import ConsistencyStage
from inference.engine.device_flow import FlowEstimator, choose_flow
from inference.engine.device_stage import consistent_frames
from inference.engine.engines import Spans
from inference.engine.frame_formats import as_rgb, check_tensor, tensor_frame_size
from inference.engine.options import LIVE_FIELDS, RuntimeOptions
from inference.engine.ready import ready_network
from inference.model.styles import style_names, style_weights

if TYPE_CHECKING:
    from inference.model.artifact import ArtifactMetadata

log = logging.getLogger(__name__)


class Stylizer:
    """Apply a style network to frames.

    Constructing a Stylizer changes no global state (cuDNN autotuning, thread counts and the like are the
    application's choice; ``stylize-video`` sets them).

    Args:
        network: A style network: float ``[B, 3, H, W]`` RGB in [0, 1] in, same out. Moved to the device and dtype.
        options: How to run it (:class:`~inference.engine.options.RuntimeOptions`: device, precision, batch size,
            backend, compile, strength, colour, strokes, consistency, style); ``None``: every default.
        metadata: The artifact header the network came from (:meth:`from_artifact` sets it); ``None`` otherwise.
        cache_key: A stable identity of the weights (the artifact's sha256): the ONNX export is then cached on disk
            under this key (:func:`inference.engine.onnx_backend.cached_session`) instead of redone on every start.

    Attributes:
        options: The :class:`~inference.engine.options.RuntimeOptions` in effect (:meth:`update` changes live ones).
        metadata: As given (``None`` when not built from an artifact).
        device, dtype, backend: Where, in which float type and on what (``"torch"``, ``"onnxruntime"``) it runs.
        precision_report: The precision, why, and the parity errors (see :mod:`inference.engine.precision`).
        style_names: The network's style names in order (from the metadata; ``"0"``, ``"1"``, ... without it).
        style_weights: The current weight of each style (non-negative, summing to 1).
        batcher: Forms the batches and shrinks them on device errors (:class:`~inference.engine.batching.Batcher`;
            its ``index_limited`` caps batches under 32-bit index math, on by default on CUDA only).
        stage_on_device: Run the consistency stage's combination on the device, inside each batch
            (:mod:`inference.engine.device_stage`), instead of on the host after the download. On CUDA by default;
            the CPU keeps the OpenCV path (faster there).
    """

    def __init__(
        self,
        network: nn.Module,
        options: RuntimeOptions | None = None,
        *,
        metadata: ArtifactMetadata | None = None,
        cache_key: str | None = None,
    ) -> None:
        options = RuntimeOptions.build(options)
        self.metadata = metadata
        self.style_names = style_names(metadata.style_names if metadata else (), getattr(network, "num_styles", 1))
        self.style_weights = style_weights(options.style, self.style_names)
        self.device = resolve_device(options.device)
        if len(self.style_names) > 1:
            network.set_style(self.style_weights)  # the parity probe must see the style the frames will get
        ready = ready_network(network, options, self.device, cache_key)
        self.network, self.dtype, self.backend = ready.network, ready.dtype, ready.backend
        self.compiled, self.precision_report = ready.compiled, ready.precision_report
        # The consistency stage's flow (RAFT on CUDA, else DIS): chosen now when it will be needed (its one log line
        # and a bad --flow-weights file come at load time), else when consistency is first turned on.
        self._flow: FlowEstimator | None = None
        if options.consistency > 0 or options.flow_weights is not None:
            self._flow = choose_flow(self.device, options.flow_weights).estimator
        cuda = self.device.type == "cuda"
        size = options.batch_size if options.batch_size is not None else (8 if cuda else 1)
        # Only CUDA kernels index with 32 bits (inference.engine.index_limit); a compiled network keeps one batch shape.
        self.batcher = Batcher(size, self.network, index_limited=cuda, pad=self.compiled, cuda=cuda)
        self.batcher.scale = options.stroke_scale
        self._step = BatchStep(ready.forward, self.dtype, options.channels_last, options)
        self.options = options
        self.stage_on_device = cuda

    @classmethod
    def from_artifact(cls, path: str | Path, options: RuntimeOptions | None = None, **fields: Any) -> Stylizer:
        """Load an exported ``.safetensors`` artifact (see :func:`inference.model.artifact.load_artifact`).

        Args:
            path: The artifact file.
            options: Runtime options (``None``: the defaults).
            **fields: :class:`~inference.engine.options.RuntimeOptions` fields that replace ``options``' (a
                shorthand: ``from_artifact(path, device="cuda")``).
        """
        from inference.model.artifact import load_artifact

        options = RuntimeOptions.build(options, **fields)
        artifact = load_artifact(path, device="cpu")
        return cls(artifact.network, options, metadata=artifact.metadata, cache_key=sha256_of_file(artifact.path))

    consistency = property(lambda self: self.options.consistency, doc="The consistency stage's strength; 0 off.")

    def update(self, **changes: Any) -> None:
        """Change live options (:data:`~inference.engine.options.LIVE_FIELDS`: strength, colour, consistency,
        strokes, style); the frames computed after the call use them. No reload, re-export or recompile.

        Raises:
            OptionError: A bad value (one line naming the field).
            TypeError: A field that decides how the network is built (device, precision, ...): make a new Stylizer.
        """
        fixed = sorted(set(changes) - set(LIVE_FIELDS))
        if fixed:
            raise TypeError(f"{', '.join(fixed)} cannot change on a running Stylizer; make a new one")
        options = RuntimeOptions.build(self.options, **changes)
        weights = style_weights(options.style, self.style_names)  # first: a refused style changes nothing
        self.options, self.style_weights = options, weights
        if "style" in changes and len(self.style_names) > 1:
            self.network.set_style(weights)
        self._step.configure(self.options)
        self.batcher.scale = self.options.stroke_scale

    @property
    def batch_size(self) -> int:
        """Frames per forward pass: as configured, lowered for good by out-of-memory and index-limit retries (once the
        pass that had to lower it ends; see :attr:`batcher`)."""
        return self.batcher.size

    def image(self, array: np.ndarray) -> np.ndarray:
        """One image: ``uint8 [H, W, 3]`` RGB (also ``[H, W]`` grey, ``[H, W, 4]`` RGBA) -> ``uint8 [H, W, 3]``."""
        return next(self.frames([array]))

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stylize a sequence of ``uint8 [H, W, 3]`` RGB arrays lazily, keeping the order; consecutive frames of one
        size are batched together. Yields one ``uint8 [H, W, 3]`` RGB array per input frame."""
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
        # A host tensor is copied before returning (the caller may refill or free it at once: an asynchronous copy
        # from its pinned memory would race with that, with nothing keeping it alive); a device tensor's copy is
        # ordered on the streams and stays asynchronous.
        batch = batch.to(self.device, non_blocking=batch.device.type != "cpu")
        float_dtype = batch.dtype if batch.is_floating_point() else None
        spans = Spans(None, cuda=False)
        # CUDA tensors stay under 2^31 elements: large frames are run in smaller chunks, for this call only (a later
        # call with small frames keeps the configured batch size).
        step = self.batcher.index_cap(*tensor_frame_size(batch, yuv_in), self.batch_size)
        chunks = [
            self._step(batch[i : i + step], spans, yuv_in, yuv_out, float_dtype) for i in range(0, batch.shape[0], step)
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
            ``(frame, meta)``: ``uint8 [H, W, 3]`` RGB, or ``uint8 [H * 3 / 2, W]`` I420 with ``yuv_out``; the
            caller's to keep (never a view into a reused buffer). On CUDA several batches are in flight
            (:class:`inference.engine.engines.CudaEngine`), so copies and the caller's work overlap GPU compute.
        """
        engine = make_engine(self.device, clock)
        if self.options.consistency <= 0:
            compute = partial(self._step, yuv_in=yuv_in, yuv_out=yuv_out, float_dtype=None)
            yield from self.batcher.run(engine, items, compute)
            return
        if yuv_in is not None or yuv_out is not None:
            raise UserError("consistency works on RGB frames: call process() without yuv_in/yuv_out")
        stage = ConsistencyStage(self.options.consistency, clock=clock, flow=self.flow, tensors=self.stage_on_device)
        strength = lambda: self.options.strength  # noqa: E731 - read at each frame: update() may change it
        yield from consistent_frames(
            stage, items, self.batcher, engine, step=self._step, strength=strength, on_device=self.stage_on_device
        )

    @property
    def flow(self) -> FlowEstimator:
        """The consistency stage's optical flow (RAFT on CUDA where its weights are at hand, else DIS; see
        :func:`inference.engine.device_flow.choose_flow`), chosen on first use."""
        if self._flow is None:
            self._flow = choose_flow(self.device, self.options.flow_weights).estimator
        return self._flow

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """The network as this Stylizer runs it (backend, precision, layout, compile, strokes), then colour
        preservation and strength: float ``[B, 3, H, W]`` RGB in [0, 1] in ``self.dtype`` on the device, same out.
        What "model only" benchmarks time."""
        return self._step.network(x)
