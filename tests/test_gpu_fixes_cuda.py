"""GPU checks of the issue-17 findings (marker ``gpu``; skipped without CUDA). Each one fails on the bug it guards:
4K-sized work where the size matters, a long kernel behind the pinned-buffer reuse, sync-free checks under
``torch.cuda.set_sync_debug_mode("error")``, and where decode, encode and stage timing really ran.

The CPU tests of the same behaviours are in the files named after them (test_index_limit.py, test_batching.py,
test_cuda_errors.py, test_devices.py, test_nvdec_choice.py, test_precision.py, test_colour.py, test_training_syncs.py).
``python -m bench.gpu_check`` runs these.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from inference.core.colour import YuvSpec, i420_to_rgb, rgb_to_i420
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network

pytestmark = pytest.mark.gpu


@contextlib.contextmanager
def no_host_sync():
    """Any synchronising CUDA call inside raises (pageable copies, ``.item()``, ``int()`` of a device tensor...)."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_finding_01_johnson_4k_at_the_default_batch():
    st = Stylizer(build_network("johnson"), RuntimeOptions(device="cuda", precision="fp16"))
    assert st.batch_size == 8
    spec = YuvSpec("bt709", chroma_left=True)
    rng = np.random.default_rng(0)
    planes = [rng.integers(16, 235, (2160 * 3 // 2, 3840), dtype=np.uint8) for _ in range(8)]
    outs = list(st.process(((p, i) for i, p in enumerate(planes)), yuv_in=spec, yuv_out=spec))
    assert [m for _, m in outs] == list(range(8)) and outs[0][0].shape == (3240, 3840)
    assert st.batch_size == 4  # capped under 2^31 elements instead of failing in the reflection pad


def test_finding_02_stage_events_time_the_stylizers_gpu():
    """The network's span must cover the network's kernels: a 1080p johnson batch takes milliseconds."""
    from inference.core.stages import StageClock

    st = Stylizer(build_network("johnson"), RuntimeOptions(device="cuda", precision="fp16", batch_size=4))
    frames = [np.zeros((1080, 1920, 3), np.uint8)] * 8
    clock = StageClock()
    list(st.process(((f, None) for f in frames), clock=clock))
    assert clock.busy["network"] > 1e-3


@pytest.mark.gpu(count=2)
def test_finding_02_second_gpu_events_and_current_device():
    from inference.core.stages import StageClock
    from inference.engine.engines import Spans

    torch.cuda.set_device(0)
    clock = StageClock()
    spans = Spans(clock, cuda=True, device=torch.device("cuda:1"))
    with spans.span("network"), torch.cuda.device(1):
        torch.cuda._sleep(int(2e8))  # noqa: SLF001 - a long kernel on GPU 1 while GPU 0 is the current device
    torch.cuda.synchronize(1)
    spans.flush()
    assert clock.busy["network"] > 0.01  # events on GPU 0's idle stream (the old code) measured about nothing


def test_finding_03_nvdec_decodes_for_real(tmp_path, make_video):
    av_hw = pytest.importorskip("av.codec.hwaccel")
    if "cuda" not in av_hw.hwdevices_available():
        pytest.skip("this FFmpeg build has no CUDA hwaccel")
    from inference.core.devices import NVDEC_MAX_THREADS
    from inference.io.video_reader import VideoSource

    clip = make_video(tmp_path / "c.mp4", n_frames=12, size=(1920, 1080), audio=False)
    source = VideoSource(clip, planes=True)
    try:
        assert "NVDEC" in source.decoder, source.decoder  # really decoded there (the first frame says so)
        assert source.stream.codec_context.thread_count <= NVDEC_MAX_THREADS
        gpu = [f.array.astype(int) for f in source.frames()]
    finally:
        source.close()
    soft = VideoSource(clip, planes=True, hwaccel=False)
    try:
        cpu = [f.array.astype(int) for f in soft.frames()]
    finally:
        soft.close()
    assert len(gpu) == len(cpu) == 12 and max(np.abs(a - b).max() for a, b in zip(gpu, cpu, strict=True)) <= 2


def test_finding_04_colour_conversion_never_waits_for_the_host():
    spec = YuvSpec("bt709", chroma_left=True)
    planes = torch.randint(16, 235, (4, 1080 * 3 // 2, 1920), dtype=torch.uint8, device="cuda")
    rgb_to_i420(i420_to_rgb(planes, spec), spec)  # the first call copies the matrices once
    with no_host_sync():
        for _ in range(3):
            rgb_to_i420(i420_to_rgb(planes, spec, torch.float16), spec)
    torch.cuda.synchronize()


class _SlowIdentity(nn.Module):
    """Identity behind a long kernel: if a pinned buffer were reused before its batch finished, frames would mix."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.cuda._sleep(int(5e7))  # noqa: SLF001
        return x + 0.0


def test_finding_04_pinned_buffers_are_reused_only_when_free(make_image):
    st = Stylizer(_SlowIdentity(), RuntimeOptions(device="cuda", precision="fp32", batch_size=2))
    frames = [make_image(270, 480, seed=i) for i in range(14)]
    outs = list(st.frames(frames))
    assert all(np.array_equal(a, b) for a, b in zip(outs, frames, strict=True))


def test_finding_09_frozen_balance_does_not_sync():
    from styletrain.loss_weights import TemporalBalance

    balance = TemporalBalance(0.5, steps=2).cuda()
    content, temporal = torch.tensor(2.0, device="cuda"), torch.tensor(1.0, device="cuda")  # made outside the check
    for _ in range(2):
        balance.observe(content, temporal)
    assert balance.frozen
    with no_host_sync():
        for _ in range(5):
            assert balance.frozen  # int() of the CUDA step counter here was a wait for the device every step
            balance.observe(content, temporal)


def test_finding_11_cuda_reflection_pad_returns_nchw():
    """The premise of the channels_last advice: if torch changes this, revisit configs/default.yaml."""
    x = torch.rand(2, 32, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    assert not nn.ReflectionPad2d(1)(x).is_contiguous(memory_format=torch.channels_last)


def test_finding_15_bf16_native_follows_compute_capability():
    from inference.engine.precision import bf16_native

    assert bf16_native(torch.device("cuda")) == (torch.cuda.get_device_capability()[0] >= 8)


def test_finding_16_left_sited_conversion_matches_the_cpu():
    spec = YuvSpec("bt709", chroma_left=True)
    planes = torch.randint(0, 256, (2, 120 * 3 // 2, 160), dtype=torch.uint8)
    cpu = i420_to_rgb(planes, spec)
    gpu = i420_to_rgb(planes.cuda(), spec).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=0)
    assert (rgb_to_i420(cpu.cuda(), spec).cpu().int() - rgb_to_i420(cpu, spec).int()).abs().max() <= 1


def test_finding_17_precision_probe_sees_the_selected_style():
    """Style 1's scales overflow fp16: the probe must reject fp16 when style 1 is selected, not test style 0."""
    torch.manual_seed(0)
    net = build_network("tiny", num_styles=2)
    with torch.no_grad():
        for module in net.modules():
            if hasattr(module, "num_styles") and isinstance(getattr(module, "weight", None), nn.Parameter):
                module.weight[1].fill_(1e6)
    first = Stylizer(copy.deepcopy(net), RuntimeOptions(device="cuda", style="0")).precision_report
    second = Stylizer(copy.deepcopy(net), RuntimeOptions(device="cuda", style="1")).precision_report
    assert math.isfinite(first.errors["fp16"]), first.line()
    assert second.chosen != "fp16" and first.errors != second.errors, (first.line(), second.line())


def test_gpu_check_bench_helpers_time_on_cuda():
    """The model-only helper bench.gpu_check uses runs on this GPU (a smoke test of the check itself)."""
    from bench.runtime_speed import measure_model_fps

    t0 = time.perf_counter()
    row = measure_model_fps(build_network("light"), 360, 640, 8, "cuda", "fp16", backend="torch", min_time=0.1)
    assert row["status"] == "ok" and row["fps"] > 0 and time.perf_counter() - t0 < 60


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


def test_finding_13_a_real_device_side_assert_retires_the_worker(tmp_path, make_video):
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
