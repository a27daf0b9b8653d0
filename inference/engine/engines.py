"""Where a :class:`~inference.engine.stylizer.Stylizer`'s batches run: synchronously on the host, or overlapped on CUDA.

Both engines take host batches (``uint8`` numpy arrays, all of one shape) and a ``compute`` function that turns the
uploaded ``uint8`` batch into the ``uint8`` result on the device (colour, network, colour back), and yield
``(frame, meta)`` pairs in submission order. Frames handed to the caller are always the caller's own memory: the
engines' buffers are recycled, so nothing the caller keeps (an encoder queue, a list) can be overwritten later.

:class:`CudaEngine` keeps up to ``depth`` batches in flight. Each batch owns a *slot*: a pinned host input buffer, a
device input buffer and a pinned host output buffer, allocated once and reused (grown only when a batch needs more).
Uploads run on an upload stream and downloads on a download stream (a stream executes in order, so one stream for
both would queue batch ``k + 1``'s upload behind batch ``k``'s download, which waits for batch ``k``'s compute); the
compute runs on the current stream. CUDA events order the three, so batch ``k + 1`` uploads and batch ``k - 1``
downloads while batch ``k`` computes. The host waits only when it needs a slot
back (the oldest batch's download) and then copies that batch's frames out of the pinned buffer, which makes the
slot free again. Stage times come from CUDA events, read after that same wait, so timing adds no synchronisation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from inference.core.stages import StageClock

#: ``compute(uploaded uint8 batch, spans) -> uint8 result``, run on the device's current stream.
Compute = Callable[[torch.Tensor, "Spans"], torch.Tensor]


class Spans:
    """Times named device stages of one batch. Host engines time with ``perf_counter`` and add at once; on CUDA
    events are recorded on ``device``'s current stream (not the process's current device, which may be another GPU)
    and read by :meth:`flush` once the batch is known to be complete."""

    def __init__(self, clock: StageClock | None, cuda: bool, device: torch.device | None = None) -> None:
        self.clock, self.cuda, self.device = clock, cuda, device
        self._events: list[tuple[str, Any, Any]] = []

    @contextmanager
    def span(self, stage: str) -> Iterator[None]:
        """Time the work issued inside the ``with`` block as ``stage``."""
        if self.clock is None:
            yield
        elif self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            stream = torch.cuda.current_stream(self.device)
            start.record(stream)
            yield
            end.record(torch.cuda.current_stream(self.device))
            self._events.append((stage, start, end))
        else:
            with self.clock.time(stage):
                yield

    def flush(self) -> None:
        """Add the recorded CUDA spans to the clock. Call only after the batch's last event has completed."""
        for stage, start, end in self._events:
            self.clock.add(stage, start.elapsed_time(end) / 1000.0)
        self._events.clear()


def _view(buffer: torch.Tensor | None, shape: tuple[int, ...], **alloc: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(buffer, view)``: a ``shape`` view of a flat ``uint8`` buffer, re-allocated only when it is too small."""
    numel = int(np.prod(shape))
    if buffer is None or buffer.numel() < numel:
        buffer = torch.empty(numel, dtype=torch.uint8, **alloc)
    return buffer, buffer[:numel].view(shape)


class HostEngine:
    """Runs each batch to completion before the next (CPU, MPS and other non-CUDA devices); results are copied to
    host memory with ``.cpu()``, so every device returns host arrays."""

    def __init__(self, device: torch.device, clock: StageClock | None) -> None:
        self.device, self.clock = device, clock

    def submit(self, arrays: list[np.ndarray], metas: list, n: int, compute: Compute) -> Iterator[tuple[Any, Any]]:
        """Run one batch; ``n`` of ``len(arrays)`` frames are real (the rest pad a fixed batch shape)."""
        spans = Spans(self.clock, cuda=False)
        batch = torch.from_numpy(np.stack(arrays))
        with spans.span("upload"):
            batch = batch.to(self.device)
        out = compute(batch, spans)[:n]
        with spans.span("download"):
            host = out.cpu().numpy()
        yield from zip(host, metas, strict=True)

    def drain(self) -> Iterator[tuple[Any, Any]]:
        """Nothing is ever in flight."""
        yield from ()

    def close(self) -> None:
        """Nothing to wait for."""


@dataclass
class _Slot:
    """The buffers and events of one batch in flight (see the module docstring)."""

    host_in: torch.Tensor | None = None
    device_in: torch.Tensor | None = None
    host_out: torch.Tensor | None = None
    done: Any = None  # torch.cuda.Event recorded after the download
    result: torch.Tensor | None = None  # pinned view holding this batch's frames
    metas: list = field(default_factory=list)
    spans: Spans | None = None


class CudaEngine:
    """Overlaps upload, compute and download of up to ``depth`` batches on one CUDA device.

    Args:
        device: A CUDA device.
        clock: Receives upload, colour, network, colour back and download times from CUDA events (or ``None``).
        depth: Batches in flight, each with its own buffers (at least 2 for any overlap).
    """

    def __init__(self, device: torch.device, clock: StageClock | None, depth: int = 3) -> None:
        self.device, self.clock = device, clock
        self.upload_stream = torch.cuda.Stream(device)
        self.download_stream = torch.cuda.Stream(device)
        self.free: deque[_Slot] = deque(_Slot() for _ in range(max(1, depth)))
        self.busy: deque[_Slot] = deque()

    def submit(self, arrays: list[np.ndarray], metas: list, n: int, compute: Compute) -> Iterator[tuple[Any, Any]]:
        """Launch one batch, first yielding the oldest batch's frames if every slot is in flight."""
        if not self.free:
            yield from self._finish_oldest()
        slot = self.free.popleft()
        try:
            self._launch(slot, arrays, n, compute)
        except BaseException:
            # The upload (and part of the compute) may already be queued: let it finish before the slot's buffers
            # are handed out again. This is the error path (e.g. out of memory), so a full wait costs nothing.
            torch.cuda.synchronize(self.device)
            self.free.appendleft(slot)
            raise
        slot.metas = metas
        self.busy.append(slot)

    def _launch(self, slot: _Slot, arrays: list[np.ndarray], n: int, compute: Compute) -> None:
        shape = (len(arrays), *arrays[0].shape)
        slot.host_in, host_in = _view(slot.host_in, shape, pin_memory=True)
        # The slot is free, so its previous download (and everything before it) has completed: both buffers can be
        # overwritten without further waiting.
        np.stack(arrays, out=host_in.numpy())
        slot.spans = spans = Spans(self.clock, cuda=True, device=self.device)
        compute_stream = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.upload_stream):
            # Allocated from the upload stream's pool: a block from the compute stream's pool could still be read by
            # compute kernels queued earlier, which this upload does not wait for.
            slot.device_in, device_in = _view(slot.device_in, shape, device=self.device)
            with spans.span("upload"):
                device_in.copy_(host_in, non_blocking=True)
            uploaded = torch.cuda.Event()
            uploaded.record()
        compute_stream.wait_event(uploaded)
        device_in.record_stream(compute_stream)  # freed (grown) later only after the compute has read it
        out = compute(device_in, spans)[:n]
        computed = torch.cuda.Event()
        computed.record(compute_stream)
        slot.host_out, slot.result = _view(slot.host_out, tuple(out.shape), pin_memory=True)
        with torch.cuda.stream(self.download_stream):
            self.download_stream.wait_event(computed)
            with spans.span("download"):
                slot.result.copy_(out, non_blocking=True)
            slot.done = torch.cuda.Event()
            slot.done.record()
        # ``out`` was allocated on the compute stream: keep the allocator from handing its memory to later compute
        # work before the download stream has read it.
        out.record_stream(self.download_stream)

    def _finish_oldest(self) -> Iterator[tuple[Any, Any]]:
        slot = self.busy.popleft()
        slot.done.synchronize()
        if slot.spans is not None and self.clock is not None:
            slot.spans.flush()
        frames = slot.result.numpy().copy()  # the caller's own memory: the pinned buffer is reused next
        metas, slot.metas, slot.result = slot.metas, [], None
        self.free.append(slot)
        yield from zip(frames, metas, strict=True)

    def drain(self) -> Iterator[tuple[Any, Any]]:
        """Yield every batch still in flight, oldest first."""
        while self.busy:
            yield from self._finish_oldest()

    def close(self) -> None:
        """Wait for batches abandoned in flight (the caller stopped early or failed) before their buffers go."""
        for slot in self.busy:
            slot.done.synchronize()
        self.busy.clear()
