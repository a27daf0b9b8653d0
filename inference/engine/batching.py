"""How a :class:`~inference.engine.stylizer.Stylizer` groups frames into batches, and the batch size it learns on the
way.

A :class:`Batcher` groups consecutive same-shaped frames into batches of at most :attr:`Batcher.size`, submits them
to an engine (:mod:`inference.engine.engines`) and, on out-of-memory or a 32-bit index overflow (see
:mod:`inference.engine.cuda_errors`), halves the batch and retries in smaller pieces. On CUDA each batch is first capped
so that no tensor of the network exceeds 2^31 elements (:mod:`inference.engine.index_limit`). Both lower the batch size
of the batches formed after them. Each pass over a stream keeps its own size while it runs (:class:`_Run`), so nothing
shared changes under a running generator; when the pass ends, a lowered size becomes :attr:`Batcher.size`, which the
Stylizer reports as its ``batch_size`` and later passes start from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.core.errors import UserError
from inference.core.stages import StageClock
from inference.engine.cuda_errors import is_out_of_memory, is_retryable_batch_error
from inference.engine.engines import Compute, CudaEngine, HostEngine
from inference.engine.frame_formats import frame_size
from inference.engine.index_limit import PeakTensor

log = logging.getLogger(__name__)

#: Batches in flight on CUDA: one uploading, one computing, one downloading.
CUDA_BATCHES_IN_FLIGHT = 3


def make_engine(device: torch.device, clock: StageClock | None) -> HostEngine | CudaEngine:
    """The engine for ``device``: :class:`CudaEngine` with :data:`CUDA_BATCHES_IN_FLIGHT` on CUDA, else synchronous."""
    if device.type == "cuda":
        return CudaEngine(device, clock, CUDA_BATCHES_IN_FLIGHT)
    return HostEngine(device, clock)


class Batcher:
    """Forms batches and shrinks them when the device refuses them.

    Args:
        size: The starting batch size (frames per forward pass).
        network: The network as it runs (dtype and layout), for the index-limit probe.
        index_limited: Cap batches under 32-bit index math (CUDA kernels; settable for tests on the CPU).
        pad: Pad a last, partial batch to the batch size (a compiled network then keeps one batch shape).
        cuda: Free the CUDA cache before retrying a smaller batch.
    """

    def __init__(self, size: int, network: nn.Module, *, index_limited: bool, pad: bool, cuda: bool) -> None:
        self.size, self.network, self.index_limited, self.pad, self.cuda = size, network, index_limited, pad, cuda
        # The stroke scale resizes the network's input, and so its tensors: the Stylizer keeps it current.
        self.scale = 1.0
        self._peak: PeakTensor | None = None
        self._caps: dict[tuple[int, int, float], int] = {}

    def run(
        self, engine: HostEngine | CudaEngine, items: Iterable[tuple[np.ndarray, Any]], compute: Compute
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Stylize ``(frame, meta)`` pairs through ``engine``, yielding ``(result, meta)`` in input order. Closes the
        engine, also when the caller stops early; then keeps a batch size the pass had to lower."""
        run = _Run(self, engine, compute)
        try:
            for arrays, metas in run.batches(items):
                yield from run.submit(arrays, metas)
            yield from engine.drain()
        finally:
            engine.close()
            if run.size < run.start:
                self.size = min(self.size, run.size)

    def index_cap(self, height: int, width: int, size: int) -> int:
        """The most ``height`` x ``width`` frames per batch that keep every network tensor under 2^31 elements (on
        CUDA; elsewhere ``size``, the caller's batch size, which the log line names when the cap is lower)."""
        if not self.index_limited:
            return size
        key = (height, width, self.scale)
        if key not in self._caps:
            if self._peak is None:
                self._peak = PeakTensor(self.network)
            self._caps[key] = self._peak.max_batch(height, width, self.scale)
            if self._caps[key] < size:
                log.info("batch size %d -> %d for %dx%d frames (32-bit index limit)", size, self._caps[key],
                         width, height)  # fmt: skip
        return self._caps[key]


class _Run:
    """One pass of :meth:`Batcher.run` over a stream: its engine, its compute and its own batch size, which only
    it lowers while it runs."""

    def __init__(self, batcher: Batcher, engine: HostEngine | CudaEngine, compute: Compute) -> None:
        self.batcher, self.engine, self.compute = batcher, engine, compute
        self.start = self.size = batcher.size

    def batches(self, items: Iterable[tuple[np.ndarray, Any]]) -> Iterator[tuple[list[np.ndarray], list]]:
        """Group consecutive same-shaped items into lists of at most :attr:`size` (re-read each time: it may
        shrink)."""
        arrays: list[np.ndarray] = []
        metas: list = []
        for array, meta in items:
            if arrays and (len(arrays) >= self.size or array.shape != arrays[0].shape):
                yield arrays, metas
                arrays, metas = [], []
            arrays.append(array)
            metas.append(meta)
        if arrays:
            yield arrays, metas

    def submit(self, arrays: list[np.ndarray], metas: list) -> Iterator[tuple[np.ndarray, Any]]:
        """Submit one batch: split at the index cap, pad if asked, halve and retry on a retryable device error."""
        n = len(arrays)
        h, w = frame_size(arrays[0])
        cap = self.batcher.index_cap(h, w, self.size)
        self.size = min(self.size, cap)
        if n > cap:
            for i in range(0, n, cap):
                yield from self.submit(arrays[i : i + cap], metas[i : i + cap])
            return
        if self.batcher.pad and n < self.size:
            # A fixed batch shape avoids recompiling for the last, partial batch.
            arrays = arrays + [arrays[-1]] * (self.size - n)
        try:
            yield from self.engine.submit(arrays, metas, n, self.compute)
        except Exception as exc:
            if not is_retryable_batch_error(exc):
                raise
            what = "out of GPU memory" if is_out_of_memory(exc) else "over CUDA's 32-bit index limit"
            if n == 1:
                raise UserError(
                    f"{what} even for one {w}x{h} frame; use `max_side` or `size`", mentions=("max_side", "size")
                ) from None
            if self.batcher.cuda:
                torch.cuda.empty_cache()
            self.size = half = max(1, n // 2)
            log.warning("%s: batch size reduced to %d", what, self.size)
            yield from self.submit(arrays[:half], metas[:half])
            yield from self.submit(arrays[half:n], metas[half:])
