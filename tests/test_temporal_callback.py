"""The validation clip callback (``styletrain/temporal/callback.py``) under DDP: every rank reads ``log_dir`` (a
collective in Lightning), and rank 0 alone writes the clip."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from inference.model.networks import build_network


def test_the_clip_callback_reads_log_dir_on_every_rank(tmp_path, make_image):
    from styletrain.temporal.callback import TemporalValidation

    reads: list[int] = []

    class Trainer:
        sanity_checking, global_step, logger, default_root_dir = False, 0, None, str(tmp_path)

        def __init__(self, rank: int) -> None:
            self.rank, self.is_global_zero = rank, rank == 0

        @property
        def log_dir(self) -> str:
            reads.append(self.rank)  # Lightning broadcasts here: every rank must arrive
            return str(tmp_path)

    module = SimpleNamespace(device=torch.device("cpu"), training=False, log=lambda *a, **k: None)
    module.eval = module.train = lambda *a, **k: None
    net = build_network("tiny").eval()
    first_batch = {"content": torch.from_numpy(make_image(32, 32)).permute(2, 0, 1)[None].float() / 255}
    for rank in (0, 1):
        cb = TemporalValidation(n_frames=3, max_side=32, log_video=True)
        cb.on_validation_batch_start(Trainer(rank), module, first_batch, 0)  # the clip pans over this image
        cb.on_validation_epoch_end(Trainer(rank), _Callable(module, net))
    assert sorted(reads) == [0, 1]
    assert len(list((tmp_path / "temporal_clips").glob("*.mp4"))) == 1  # written by rank 0 only


class _Callable:
    """A LightningModule stand-in: attributes of ``module``, called like ``net``."""

    def __init__(self, module: SimpleNamespace, net: nn.Module) -> None:
        self._module, self._net = module, net

    def __getattr__(self, name: str):
        return getattr(self._module, name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._net(x)


_TWO_RANKS = r"""
import sys
from datetime import timedelta
from types import SimpleNamespace

import torch
import torch.distributed as dist

from inference.model.networks import build_network
from styletrain.temporal.callback import TemporalValidation

rank, port, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                        timeout=timedelta(seconds=20))


class Trainer:
    sanity_checking, global_step, logger, default_root_dir, is_global_zero = False, 0, None, folder, rank == 0

    @property
    def log_dir(self):  # what Lightning does: rank 0's value, broadcast to every rank
        value = [folder if rank == 0 else None]
        dist.broadcast_object_list(value, src=0)
        return value[0]


net = build_network("tiny").eval()


class Module:
    device, training = torch.device("cpu"), False
    eval = train = log = lambda self, *a, **k: None

    def __call__(self, x):
        return net(x)


cb = TemporalValidation(n_frames=3, max_side=32, log_video=True)
first_batch = {"content": torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))}
cb.on_validation_batch_start(Trainer(), Module(), first_batch, 0)  # the clip pans over this image
cb.on_validation_epoch_end(Trainer(), Module())
dist.barrier()
dist.destroy_process_group()  # without it gloo's threads may abort the process at exit ("terminate called ...")
print("rank", rank, "done", flush=True)
"""


@pytest.mark.slow
def test_the_clip_callback_on_two_gloo_processes(tmp_path):
    """The real collective: with log_dir read on rank 0 only, rank 0 waits in the broadcast until gloo times out."""
    import socket
    import subprocess
    import sys

    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    root = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), port, str(tmp_path)], cwd=root, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in (0, 1)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all(f"rank {r} done" in out for r, out in enumerate(outputs))
    assert len(list((tmp_path / "temporal_clips").glob("*.mp4"))) == 1
