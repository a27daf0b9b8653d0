"""CUDA errors (``inference/engine/cuda_errors.py``): a sticky error (the context is broken) is told apart from a
retryable one, and a worker whose context broke takes no more files, in this process or in a pool; on a GPU (marker
``gpu``), a real device-side assert."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inference.app.file_options import FileOptions
from inference.core.errors import UserError
from inference.engine.cuda_errors import is_retryable_batch_error, is_sticky_cuda_error
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer


def test_sticky_cuda_errors_are_told_apart_from_retryable_ones():
    sticky = RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...")
    assert is_sticky_cuda_error(sticky) and not is_retryable_batch_error(sticky)
    assert is_sticky_cuda_error(RuntimeError("CUDA error: device-side assert triggered"))
    wrapped = ValueError("stylizing failed")
    wrapped.__cause__ = RuntimeError("CUDA error: unspecified launch failure")
    assert is_sticky_cuda_error(wrapped)
    assert not is_sticky_cuda_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_sticky_cuda_error(UserError("a.mp4: not a video"))


class _Sticky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_an_in_process_worker_takes_no_more_files_after_a_sticky_error(monkeypatch, tmp_path, make_video):
    import inference.app.local_executor as local_executor
    from inference.app.jobs import Job

    net = _Sticky()
    monkeypatch.setattr(
        local_executor, "load_stylizer", lambda model, *a, **k: Stylizer(net, RuntimeOptions(device="cpu"))
    )
    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)
    tasks = [(i, Job(clip, tmp_path / f"o{i}.mp4")) for i in range(3)]
    reports: dict = {}
    executor = local_executor.LocalExecutor("m", ["cpu"], RuntimeOptions(device="cpu"), FileOptions())
    executor.start()
    executor.run(tasks, lambda i, outcome: reports.__setitem__(i, outcome))
    assert net.calls == 1  # the two later files were not attempted on the broken context
    assert reports[0].retire and "takes no more files" in reports[0].message
    assert [reports[i].status for i in (1, 2)] == ["failed", "failed"]
    assert all("failed on an earlier file" in reports[i].message for i in (1, 2))


def test_a_pool_worker_leaves_the_queue_after_a_sticky_error(monkeypatch, unbound, tmp_path, make_video):
    import queue

    import inference.app.worker_pool as worker_pool
    from inference.app.jobs import Job

    net = _Sticky()
    monkeypatch.setattr(
        worker_pool, "load_stylizer", lambda model, *a, **k: Stylizer(net, RuntimeOptions(device="cpu"))
    )
    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)
    tasks, results = queue.Queue(), queue.Queue()
    for i in range(3):
        tasks.put((i, Job(clip, tmp_path / f"o{i}.mp4")))
    tasks.put(None)
    spec = worker_pool.PoolSpec("m", RuntimeOptions(device="cpu"), FileOptions(), quiet=True)
    seat = worker_pool.Seat(0, "cpu", 1)
    unbound.run(worker_pool.serve, seat, spec, tasks, results)
    messages = [results.get_nowait() for _ in range(results.qsize())]
    assert [m[0] for m in messages] == ["start", "done"] and messages[1][3].retire
    assert tasks.qsize() == 3  # two files and the end marker, left to the other workers


_STICKY = r"""
import sys
from pathlib import Path

import torch
from torch import nn

from inference.app.file_options import FileOptions
from inference.app.jobs import Job, run_job
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer


class OutOfBounds(nn.Module):
    def forward(self, x):
        index = torch.tensor([10**6], device=x.device)
        return x + x.flatten()[index].sum()  # a device-side assert: the context is broken from here on


clip, out = sys.argv[1], sys.argv[2]
stylizer = Stylizer(OutOfBounds(), RuntimeOptions(device="cuda", precision="fp32"))
outcome = run_job(stylizer, Job(Path(clip), Path(out)), FileOptions())
print("RETIRE" if outcome.retire else "KEEP", outcome.message)
"""


@pytest.mark.gpu
def test_a_real_device_side_assert_retires_the_worker(tmp_path, make_video):
    """In a subprocess: a real sticky error (its CUDA context stays broken) must be classified as one."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    clip = make_video(tmp_path / "c.mp4", n_frames=4, audio=False)
    script = tmp_path / "sticky.py"
    script.write_text(_STICKY)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, str(script), str(clip), str(tmp_path / "o.mp4")]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert "RETIRE" in done.stdout, done.stdout + done.stderr[-2000:]
    assert not (tmp_path / "o.mp4").exists()
