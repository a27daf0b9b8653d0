"""How a :class:`~inference.stylizer.Stylizer` groups frames into batches, and the batch size it learns on the way.

A :class:`Batcher` groups consecutive same-shaped frames into batches of at most :attr:`Batcher.size`, submits them
to an engine (:mod:`inference.engines`) and, on out-of-memory or a 32-bit index overflow (see
:mod:`inference.cuda_errors`), halves the batch and retries in smaller pieces. On CUDA each batch is first capped so
that no tensor of the network exceeds 2^31 elements (:mod:`inference.index_limit`). Both lower :attr:`Batcher.size`
for the batches formed after them: the size is the Batcher's state, learned once per device and frame size, which the
Stylizer reports as its ``batch_size``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.cuda_errors import is_out_of_memory, is_retryable_batch_error
from inference.engines import Compute, CudaEngine, HostEngine
from inference.errors import UserError
from inference.frame_formats import frame_size
from inference.index_limit import PeakTensor
from inference.stages import StageClock

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
        pad: Pad a last, partial batch to :attr:`size` (a compiled network then keeps one batch shape).
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
        engine, also when the caller stops early."""
        try:
            for arrays, metas in self._batches(items):
                yield from self._submit(engine, arrays, metas, compute)
            yield from engine.drain()
        finally:
            engine.close()

    def cap(self, height: int, width: int) -> int:
        """The most ``height`` x ``width`` frames per batch that keep every network tensor under 2^31 elements (on
        CUDA; elsewhere :attr:`size`). Lowers :attr:`size` to it, so later batches are formed at that size."""
        if not self.index_limited:
            return self.size
        key = (height, width, self.scale)
        if key not in self._caps:
            if self._peak is None:
                self._peak = PeakTensor(self.network)
            self._caps[key] = self._peak.max_batch(height, width, self.scale)
            if self._caps[key] < self.size:
                log.info("batch size %d -> %d for %dx%d frames (32-bit index limit)", self.size, self._caps[key],
                         width, height)  # fmt: skip
        self.size = min(self.size, self._caps[key])
        return self._caps[key]

    def _batches(self, items: Iterable[tuple[np.ndarray, Any]]) -> Iterator[tuple[list[np.ndarray], list]]:
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

    def _submit(self, engine, arrays: list[np.ndarray], metas: list, compute: Compute) -> Iterator:
        """Submit one batch: split at the index cap, pad if asked, halve and retry on a retryable device error."""
        n = len(arrays)
        h, w = frame_size(arrays[0])
        cap = self.cap(h, w)
        if n > cap:
            for i in range(0, n, cap):
                yield from self._submit(engine, arrays[i : i + cap], metas[i : i + cap], compute)
            return
        if self.pad and n < self.size:
            # A fixed batch shape avoids recompiling for the last, partial batch.
            arrays = arrays + [arrays[-1]] * (self.size - n)
        try:
            yield from engine.submit(arrays, metas, n, compute)
        except Exception as exc:
            if not is_retryable_batch_error(exc):
                raise
            what = "out of GPU memory" if is_out_of_memory(exc) else "over CUDA's 32-bit index limit"
            if n == 1:
                raise UserError(f"{what} even for one {w}x{h} frame; use --max-side or --size") from None
            if self.cuda:
                torch.cuda.empty_cache()
            self.size = half = max(1, n // 2)
            log.warning("%s: batch size reduced to %d", what, self.size)
            yield from self._submit(engine, arrays[:half], metas[:half], compute)
            yield from self._submit(engine, arrays[half:n], metas[half:], compute)
