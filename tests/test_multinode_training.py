"""Training across nodes: two torchrun "nodes" of one process each meet through a rendezvous on localhost (gloo).

This is the README's multi-node torchrun command with ``--master-addr 127.0.0.1``: Lightning reads the ranks and
world size torchrun sets, so both processes must train the same steps in lockstep (DDP averages gradients), end
with the same weights, and only rank 0 writes the artifact.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")

# A callback each rank runs at the end of fit: its global step and a digest of its weights, in a file of its own.
RANK_REPORT = textwrap.dedent(
    """
    import hashlib
    import os

    import pytorch_lightning as pl


    class RankReport(pl.Callback):
        def on_fit_end(self, trainer, pl_module):
            digest = hashlib.sha256()
            for tensor in pl_module.net.state_dict().values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
            with open(f"rank{trainer.global_rank}.txt", "w") as f:
                f.write(f"{trainer.world_size} {trainer.global_step} {digest.hexdigest()}")
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_through_torchrun_train_in_lockstep(tmp_path, make_image, make_image_folder):
    Image.fromarray(make_image(96, 80, seed=7)).save(tmp_path / "Starry.png")
    make_image_folder(tmp_path / "photos", 8, size=(72, 90))
    (tmp_path / "rank_report.py").write_text(RANK_REPORT)
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONPATH=str(tmp_path))
    port = _free_port()
    fit = ["-m", "styletrain.cli", "fit", "--config", SMOKE, "--style", "Starry.png", "--data.path", "photos"]
    fit += ["--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.accelerator", "cpu"]
    fit += ["--trainer.strategy", "ddp", "--trainer.num_nodes", "2", "--trainer.devices", "1"]
    fit += ["--trainer.callbacks+=rank_report.RankReport"]
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
            + ["--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port), *fit],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    reports = [(tmp_path / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]
    assert reports[0][:2] == ["2", "4"], reports  # world size 2, 4 optimizer steps
    assert reports[0] == reports[1], reports  # same steps, same final weights on both nodes
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == ["smoke.safetensors"]
    assert outputs[0][0].strip().splitlines()[-1] == "artifacts/smoke.safetensors"
