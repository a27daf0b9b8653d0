"""Faults on a Ray cluster: a worker killed mid-file, a node lost mid-run, the driver stopped with SIGTERM.

One two-node cluster (``ray.cluster_utils.Cluster``: two raylets on this machine, one CPU each) serves the module.
Every test ends with every good file written, frame for frame, and nothing partial (no hidden temporary file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import count_video_frames, run_cli

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

N_FRAMES = 90  # Long enough for a fault to land while a file is being written.


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # Fast health checks, so that a removed node is declared dead in about a second, not half a minute.
    config = {"health_check_period_ms": 200, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "_system_config": config})
    cluster.add_node(num_cpus=1, num_gpus=0)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def clips(tmp_path, make_video) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        make_video(folder / f"c{i}.mp4", n_frames=N_FRAMES, size=(96, 64), audio=False)
    return folder


def _when_writing(out: Path, count: int, action, timeout: float = 120.0) -> threading.Thread:
    """Run ``action()`` in a thread as soon as ``count`` temporary outputs are being written in ``out``."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if out.is_dir() and len(list(out.glob(".*.tmp-*"))) >= count:
                action()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _busy_worker_pids() -> list[int]:
    """Ray actor processes now running ``_Worker.run`` (Ray names its worker processes after the running task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_Worker.run"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _assert_complete(out: Path, clips: Path, names: list[str] | None = None) -> None:
    names = names if names is not None else sorted(p.name for p in clips.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # nothing hidden, nothing partial
    assert all(count_video_frames(out / name) == N_FRAMES for name in names)


def test_a_worker_killed_mid_file_is_redone_elsewhere(cluster, clips, model, tmp_path, capsys):
    out, killed = tmp_path / "out", []

    def kill_one() -> None:
        for pid in _busy_worker_pids()[:1]:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    watcher = _when_writing(out, 1, kill_one)
    assert run_cli(clips, "-m", model, "-o", out, "--cluster", "ray") == 0
    watcher.join()
    err = capsys.readouterr().err
    assert killed and "died" in err and "(retry 1 of 2)" in err, err
    _assert_complete(out, clips)


def test_a_node_lost_mid_run(cluster, clips, model, tmp_path, capsys):
    worker = next(node for node in cluster.worker_nodes)
    out = tmp_path / "out"
    watcher = _when_writing(out, 2, lambda: cluster.remove_node(worker, allow_graceful=False))
    try:
        assert run_cli(clips, "-m", model, "-o", out, "--cluster", "ray") == 0
        watcher.join()
        assert "(retry 1 of 2)" in capsys.readouterr().err
        _assert_complete(out, clips)
    finally:
        if worker not in cluster.worker_nodes:
            cluster.add_node(num_cpus=1, num_gpus=0)


def test_driver_sigterm_leaves_nothing_partial_and_a_rerun_finishes(cluster, clips, model, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "inference.app.cli", str(clips), "-m", str(model), "-o", str(out), "--cluster", "ray"]
    proc = subprocess.Popen([*cmd, "--ray-address", cluster.address, "-q"], stderr=subprocess.PIPE, text=True)
    watcher = _when_writing(out, 1, lambda: proc.send_signal(signal.SIGTERM))
    _, err = proc.communicate(timeout=180)
    watcher.join()
    assert proc.returncode == 143 and err.strip().endswith("error: terminated"), err
    done = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert len(done) < 3 and all(not name.startswith(".") for name in done), done
    assert all(count_video_frames(out / name) == N_FRAMES for name in done)
    assert run_cli(clips, "-m", model, "-o", out, "--cluster", "ray", "--skip-existing", "-q") == 0
    _assert_complete(out, clips)
