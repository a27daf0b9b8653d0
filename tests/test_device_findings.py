"""Issue 27, findings 5-8, where a CPU can show them: the precision probe under compile compiles nothing; Ray actors
bind their device and host threads as the local pool's workers do; one large batch through ``Stylizer.tensors`` does
not lower the batch size for good."""

from __future__ import annotations

import torch

from inference.app.ray_executor import actor_device
from inference.engine import batching
from inference.engine.backends import probe_runner
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network


def test_precision_probe_under_compile_compiles_no_copies(monkeypatch):
    """Finding 5: copies compiled for the probe share the class's compile cache (recompile slots, dynamic shapes)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the precision probe compiled a copy of the network")

    monkeypatch.setattr(torch, "compile", refuse)
    torch.manual_seed(0)
    net = build_network("tiny").eval()
    x = torch.rand(1, 3, 32, 48)
    for mode in ("default", "reduce-overhead", "max-autotune"):
        with torch.inference_mode():
            assert torch.equal(probe_runner(True, mode)(net)(x), net(x))


def test_ray_actors_name_their_device_for_binding():
    """Finding 6: a GPU actor binds its GPU and its share of host threads (bind_worker), as the local pool does."""
    assert actor_device([]) == "cpu"
    assert actor_device(["0"]) == "cuda"


class _SmallCap:
    """Stands in for the 32-bit index probe: frames over 1000 pixels fit one per batch, smaller ones any number."""

    def __init__(self, network) -> None:
        pass

    def max_batch(self, height: int, width: int, scale: float = 1.0) -> int:
        return 1 if height * width > 1000 else 64


def test_one_large_tensor_batch_does_not_lower_the_batch_size_for_good(monkeypatch):
    """Finding 8: ``Stylizer.tensors`` chunks a batch of large frames under the index limit for that call only."""
    monkeypatch.setattr(batching, "PeakTensor", _SmallCap)
    stylizer = Stylizer(build_network("identity"), RuntimeOptions(device="cpu", backend="torch", batch_size=4))
    stylizer.batcher.index_limited = True  # as on CUDA
    large = torch.randint(0, 256, (3, 40, 40, 3), dtype=torch.uint8)
    assert torch.equal(stylizer.tensors(large), large)  # identity, in chunks of one
    assert stylizer.batch_size == 4
    small = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    assert torch.equal(stylizer.tensors(small), small) and stylizer.batch_size == 4
