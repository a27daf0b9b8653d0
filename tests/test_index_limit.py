"""The batch cap under CUDA's 32-bit index math (``inference/engine/index_limit.py``): the largest tensor of the
network decides how many frames fit, and the Stylizer splits its batches to stay under it, for that call only; on a
GPU (marker ``gpu``), johnson at 4K."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.core.colour import YuvSpec
from inference.core.errors import UserError
from inference.engine import batching, index_limit
from inference.engine.index_limit import INDEX_LIMIT, PeakTensor
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network


def test_the_batch_is_capped_by_the_largest_tensors_element_count():
    peak = PeakTensor(build_network("johnson"))
    # johnson's largest tensor: 64 channels at full resolution, reflection-padded by one pixel on each side.
    assert peak.elements(2160, 3840) == 64 * 3842 * 2162
    assert 8 * peak.elements(2160, 3840) > INDEX_LIMIT  # the default CUDA batch of 8 overflows...
    assert peak.max_batch(2160, 3840) == 4  # ...and 4 is the largest that does not
    assert peak.max_batch(1080, 1920) >= 8
    # A stroke scale below 1 runs the network on a larger frame: at 0.5, one 4K frame is all that fits.
    assert peak.elements(2160, 3840, 0.5) == 64 * 7682 * 4322
    assert peak.max_batch(2160, 3840, 0.5) == 1
    with pytest.raises(UserError, match=r"3840x2160 frame at `stroke_scale` 0.25 .*32-bit index") as err:
        peak.max_batch(2160, 3840, 0.25)
    assert "\n" not in str(err.value)
    # light never holds a wide full-resolution tensor.
    assert PeakTensor(build_network("light")).max_batch(2160, 3840) >= 8
    # A Stylizer's network on CUDA is fp16 or bf16, channels_last possibly, multi-style possibly: same shapes.
    half = build_network("johnson", num_styles=2).half().to(memory_format=torch.channels_last)
    assert PeakTensor(half).max_batch(2160, 3840) == 4


def test_the_stylizer_splits_batches_at_the_index_limit(monkeypatch, make_image):
    torch.manual_seed(0)
    st = Stylizer(build_network("tiny"), RuntimeOptions(device="cpu", batch_size=8, backend="torch"))
    reference = list(st.frames(make_image(32, 48, seed=i) for i in range(8)))
    sizes: list[int] = []
    # (The shape probe runs a meta-device copy, hooks included: only real batches count.)
    st.network.register_forward_hook(lambda _m, x, _o: None if x[0].is_meta else sizes.append(x[0].shape[0]))
    # The cap the Stylizer applies on CUDA, forced here on the CPU with a limit three frames wide.
    st.batcher.index_limited = True
    monkeypatch.setattr(index_limit, "INDEX_LIMIT", 3 * PeakTensor(st.network).elements(32, 48))
    out = list(st.frames(make_image(32, 48, seed=i) for i in range(8)))
    assert max(sizes) == 3 and sum(sizes) == 8 and st.batch_size == 3
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(out, reference, strict=True))
    # Stylizer.tensors too (device tensors, e.g. from a GPU decoder): chunks of at most the cap.
    sizes.clear()
    st.batcher.size = 8
    batch = torch.from_numpy(np.stack([make_image(32, 48, seed=i) for i in range(8)]))
    assert st.tensors(batch).shape == (8, 32, 48, 3) and max(sizes) == 3 and sum(sizes) == 8
    sizes.clear()
    st.tensors(batch.permute(0, 3, 1, 2).float() / 255)
    assert max(sizes) == 3 and sum(sizes) == 8


class _SmallCap:
    """Stands in for the 32-bit index probe: frames over 1000 pixels fit one per batch, smaller ones any number."""

    def __init__(self, network) -> None:
        pass

    def max_batch(self, height: int, width: int, scale: float = 1.0) -> int:
        return 1 if height * width > 1000 else 64


def test_one_large_tensor_batch_does_not_lower_the_batch_size_for_good(monkeypatch):
    """``Stylizer.tensors`` chunks a batch of large frames under the index limit for that call only: the next batch of
    small frames runs at the configured batch size again."""
    monkeypatch.setattr(batching, "PeakTensor", _SmallCap)
    stylizer = Stylizer(build_network("identity"), RuntimeOptions(device="cpu", backend="torch", batch_size=4))
    stylizer.batcher.index_limited = True  # as on CUDA
    large = torch.randint(0, 256, (3, 40, 40, 3), dtype=torch.uint8)
    assert torch.equal(stylizer.tensors(large), large)  # identity, in chunks of one
    assert stylizer.batch_size == 4
    small = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    assert torch.equal(stylizer.tensors(small), small) and stylizer.batch_size == 4


@pytest.mark.gpu
def test_johnson_at_4k_on_cuda_caps_the_default_batch_instead_of_failing():
    st = Stylizer(build_network("johnson"), RuntimeOptions(device="cuda", precision="fp16"))
    assert st.batch_size == 8
    spec = YuvSpec("bt709", chroma_left=True)
    rng = np.random.default_rng(0)
    planes = [rng.integers(16, 235, (2160 * 3 // 2, 3840), dtype=np.uint8) for _ in range(8)]
    outs = list(st.process(((p, i) for i, p in enumerate(planes)), yuv_in=spec, yuv_out=spec))
    assert [m for _, m in outs] == list(range(8)) and outs[0][0].shape == (3240, 3840)
    assert st.batch_size == 4  # capped under 2^31 elements instead of failing in the reflection pad
