"""Which GPU a worker uses (``inference/core/devices.py``): torch, NVDEC, NVENC and the stage timers on the worker's
own device, and the host cores shared between the workers; on two GPUs (marker ``gpu``), the stage timers for real."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from .conftest import fake_hwaccel_opens


def test_a_worker_maps_to_its_physical_gpu(monkeypatch, unbound, tmp_path, make_video):
    from inference.core import devices
    from inference.io.video_reader import VideoSource

    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.cuda_index("cuda:1") == 1 and devices.cuda_index("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert devices.cuda_index("cuda") == 1 and devices.physical_id(1) == "3"

    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)
    asked = fake_hwaccel_opens(monkeypatch, decode_on_hw=False)

    def in_worker():
        devices.bind_worker("cuda:1", 4)
        VideoSource(clip).close()
        return devices.nvdec_device(), devices.nvenc_options()

    nvdec, nvenc = unbound.run(in_worker)
    assert calls == [1]  # torch's current device is the worker's GPU
    assert nvdec == "1" and nvenc == {"gpu": "1"}  # NVDEC and NVENC on it too, not on GPU 0
    # The decoder is created for GPU 1, without a silent software fallback.
    assert [(hw.device_id, hw.allow_software_fallback) for hw in asked] == [(1, False)]
    calls.clear()
    assert unbound.run(lambda: (devices.bind_worker("cpu", 2), devices.nvenc_options())[1]) == {}
    assert calls == []


def test_stage_events_are_recorded_on_the_devices_stream(monkeypatch):
    from inference.core.stages import StageClock
    from inference.engine.engines import Spans

    recorded: list[str] = []

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            pass

        def record(self, stream=None) -> None:
            recorded.append(stream)  # the old code passed none: the current device's stream, GPU 0

        def elapsed_time(self, other) -> float:
            return 5.0

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {device}")
    clock = StageClock()
    spans = Spans(clock, cuda=True, device=torch.device("cuda:1"))
    with spans.span("network"):
        pass
    spans.flush()
    assert recorded == ["stream of cuda:1", "stream of cuda:1"]


@pytest.mark.gpu(count=2)
def test_stage_events_time_the_workers_gpu_while_another_is_current():
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


def test_stylize_file_binds_the_stylizers_gpu(monkeypatch, unbound, tmp_path):
    """stylize_file binds its Stylizer's device before it opens the decoder and the encoder."""
    import inference.app.convert as convert
    from inference.core import devices

    seen = {}

    def stop(*args, **kwargs):
        seen["gpu"] = devices.media_gpu()
        raise RuntimeError("stop here")

    monkeypatch.setattr(convert, "output_kind", stop)
    fake = SimpleNamespace(device=torch.device("cuda:1"))
    with pytest.raises(RuntimeError, match="stop here"):
        unbound.run(convert.stylize_file, fake, tmp_path / "a.mp4", tmp_path / "b.mp4")
    assert seen == {"gpu": 1}


def test_gpu_workers_share_the_host_cores(unbound, tmp_path, make_video):
    from inference.core import devices
    from inference.io.video_reader import VideoSource

    assert devices.host_thread_budgets(["cuda:0", "cuda:1"], cores=16) == [8, 8]
    assert devices.host_thread_budgets(["cuda:0"] * 4 + ["cpu"] * 4, cores=16) == [2] * 8
    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)

    def in_worker():
        devices.bind_worker("cpu", 6)
        source = VideoSource(clip, hwaccel=False)
        try:
            return devices.encoder_threads(), source.stream.codec_context.thread_count
        finally:
            source.close()

    assert unbound.run(in_worker) == (6, 3)  # x264 gets the share, the software decoder half of it
