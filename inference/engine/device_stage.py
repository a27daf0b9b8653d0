"""The consistency stage inside the Stylizer's batching: on the host after the download
(:meth:`inference.engine.consistency.ConsistencyStage.run`, OpenCV), or on the Stylizer's device, inside each batch's
compute, between the network and the download, so the frames never make a full-resolution trip through the host.

On the device:
Each input frame is announced to the flow and its motion estimated in the stage's worker thread as soon as it is read
(RAFT on its own CUDA stream: :class:`inference.engine.device_flow.RaftFlow` orders the caller's stream after it with
an event, not a blocking copy). When a batch's network output is ready on the device, the batch's motions are taken in
frame order, the combination runs as tensor operations on the current stream
(:class:`inference.engine.consistency_tensor.TensorCombiner`), and the user's strength mixes the original frames in
last, from the uploaded input that is on the device already. The engine then downloads the result as it would the
plain output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import torch

from inference.engine.batch_step import BatchStep
from inference.engine.batching import Batcher
from inference.engine.consistency import ConsistencyStage, Motion
from inference.engine.consistency_tensor import to_uint8, to_unit
from inference.engine.engines import Spans


def consistent_frames(
    stage: ConsistencyStage,
    items: Iterable[tuple[np.ndarray, Any]],
    batcher: Batcher,
    engine: Any,
    *,
    step: BatchStep,
    strength: Callable[[], float],
    on_device: bool,
) -> Iterator[tuple[np.ndarray, Any]]:
    """Stylize ``(frame, meta)`` pairs through ``batcher`` and ``engine`` and make them consistent with ``stage``.

    The stage sees the network's output before the strength mixes in the original frame, and the strength is applied
    after it: a frame with nothing of the network's in it is never moved.

    Args:
        stage: The stage (made with ``tensors=on_device``).
        items: ``uint8 [H,W,3]`` RGB frames and their metadata.
        batcher, engine: How the Stylizer forms and runs batches (:mod:`inference.engine.batching`).
        step: The Stylizer's batch step; called without the strength mix, which comes after the stage.
        strength: The user's strength, read for each batch.
        on_device: Combine on the device, inside each batch's compute; else on the host after the download
            (:meth:`~inference.engine.consistency.ConsistencyStage.run`).

    Yields:
        ``(uint8 [H,W,3], meta)`` in input order.
    """
    if not on_device:
        network_only = partial(step, yuv_in=None, yuv_out=None, float_dtype=None, mix=False)
        yield from stage.run(items, lambda pairs: batcher.run(engine, pairs, network_only), mix=strength)
        return
    pending: deque[Future[Motion]] = deque()  # motions of the frames read and not yet combined, in order
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow") as pool:

        def submitted() -> Iterator[tuple[np.ndarray, Any]]:
            for frame, meta in items:
                stage.flow.show(frame)
                pending.append(pool.submit(stage.estimate, frame))
                yield frame, meta

        def compute(batch: torch.Tensor, spans: Spans) -> torch.Tensor:
            out = step(batch, spans, None, None, None, mix=False)
            # A compiled network's last batch is padded to the batch size: only the frames read are combined.
            real = min(out.shape[0], len(pending))
            motions = [pending[i].result() for i in range(real)]
            with spans.span("consistency"):
                combined = stage.combine_batch(out[:real], motions)
                s = strength()
                if s < 1.0:
                    combined = torch.lerp(to_unit(batch[:real]), combined, float(s))
                result = to_uint8(combined)
            for _ in range(real):  # only now: a batch retried after running out of memory finds its motions again
                pending.popleft()
            return torch.cat((result, out[real:])) if real < out.shape[0] else result

        yield from batcher.run(engine, submitted(), compute)
