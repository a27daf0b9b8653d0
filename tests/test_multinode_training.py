"""Training across nodes: two torchrun "nodes" of one process each meet through a rendezvous on localhost (gloo).

The command is the torchrun line of docs/training.md (the README shows the same line), word for word except the node
rank, ``MASTER_ADDR=127.0.0.1``, a free port, absolute paths and a shorter run: Lightning reads the ranks and world
size torchrun sets, so both processes must train the same steps in lockstep (DDP averages gradients), end with the
same weights, and only rank 0 writes the artifact. The page's SLURM line is checked to parse (there is no SLURM here).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

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


def _documented_line(program: str) -> list[str]:
    """The one line of docs/training.md ("Training across nodes") that starts with ``program``, as words."""
    page = REPO / "docs" / "training.md"
    (line,) = [line for line in page.read_text().splitlines() if line.startswith(program + " ")]
    return shlex.split(line)


def _node_command(rank: int, port: int) -> list[str]:
    """The documented torchrun command for node ``rank`` on this machine."""
    values = {"$NODE_RANK": str(rank), "$MASTER_ADDR": "127.0.0.1", "29500": str(port)}
    words = [
        values.get(w, str(REPO / w) if w.startswith(("configs/", "data/")) else w) for w in _documented_line("torchrun")
    ]
    words[words.index("--no-python") + 1] = str(Path(sys.executable).with_name("styletrain"))
    words += ["--data.path", str(REPO / "data/samples/content"), "--trainer.max_steps", "4"]
    words += ["--trainer.val_check_interval", "2", "--trainer.callbacks+=rank_report.RankReport"]
    return [sys.executable, "-m", "torch.distributed.run", *words[1:]]


@pytest.mark.slow
def test_two_nodes_through_torchrun_train_in_lockstep(tmp_path):
    (tmp_path / "rank_report.py").write_text(RANK_REPORT)
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1", PYTHONPATH=str(tmp_path))
    port = _free_port()
    nodes = [
        subprocess.Popen(
            _node_command(rank, port),
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


def test_the_documented_slurm_command_parses(monkeypatch, capsys):
    from styletrain.cli import main

    monkeypatch.chdir(REPO)
    words = _documented_line("srun")
    assert words[1] == "styletrain"
    with pytest.raises(SystemExit) as info:
        main([*words[2:], "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert info.value.code in (0, None)
    assert config["trainer"]["num_nodes"] == 2 and config["trainer"]["strategy"] == "ddp"


def test_the_readme_shows_the_documented_torchrun_line():
    readme = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("torchrun ")]
    assert [shlex.split(line) for line in readme] == [_documented_line("torchrun")]
