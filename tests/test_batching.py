"""Batches (``inference/engine/batching.py``): an error that a smaller batch can avoid (out of memory of any kind,
CUDA's 32-bit index limit) halves the batch and retries; one frame that still fails is one line; anything else fails
at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inference.core.errors import UserError
from inference.engine.cuda_errors import is_out_of_memory
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer


class _RaiseAbove(nn.Module):
    """Identity that raises ``error`` for batches larger than ``limit`` and records every batch size."""

    def __init__(self, limit: int, error: BaseException) -> None:
        super().__init__()
        self.limit, self.error, self.sizes = limit, error, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise self.error
        return x


RETRYABLE = {
    "index limit": RuntimeError("input tensor must fit into 32-bit index math"),
    "cuDNN allocation": RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    "cuBLAS allocation": RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    "out of memory": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
}


@pytest.mark.parametrize("error", RETRYABLE.values(), ids=RETRYABLE.keys())
def test_an_error_a_smaller_batch_avoids_halves_the_batch(error, make_image):
    net = _RaiseAbove(2, error)
    st = Stylizer(net, RuntimeOptions(device="cpu", batch_size=8))
    frames = [make_image(16, 24, seed=i) for i in range(11)]
    outs = list(st.frames(frames))
    assert all(np.array_equal(a, b) for a, b in zip(outs, frames, strict=True)) and len(outs) == 11
    assert st.batch_size == 2 and net.sizes[:3] == [8, 4, 2]


ONE_FRAME = {
    "index limit": (RuntimeError("must fit into 32-bit index math"), "32-bit index limit"),
    "out of memory": (torch.OutOfMemoryError("simulated OOM"), "out of GPU memory"),
}


@pytest.mark.parametrize(("error", "what"), ONE_FRAME.values(), ids=ONE_FRAME.keys())
def test_one_frame_that_still_fails_is_one_line(error, what, make_image):
    frames = [make_image(16, 24, seed=i) for i in range(8)]
    with pytest.raises(UserError, match=f"{what} even for one 24x16 frame"):
        list(Stylizer(_RaiseAbove(0, error), RuntimeOptions(device="cpu", batch_size=2)).frames(frames))


def test_out_of_memory_is_recognised_without_torch_out_of_memory_error(monkeypatch, make_image):
    """torch before 2.5 has no ``torch.OutOfMemoryError``: the check must not depend on it."""
    frames = [make_image(16, 24, seed=i) for i in range(4)]
    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    st = Stylizer(
        _RaiseAbove(1, torch.cuda.OutOfMemoryError("CUDA out of memory")), RuntimeOptions(device="cpu", batch_size=2)
    )
    assert len(list(st.frames(frames))) == 4


def test_any_other_error_fails_at_once(make_image):
    frames = [make_image(16, 24, seed=i) for i in range(4)]
    net = _RaiseAbove(0, RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(Stylizer(net, RuntimeOptions(device="cpu", batch_size=4)).frames(frames))
    assert net.sizes == [4]  # not retried at 2 and 1
