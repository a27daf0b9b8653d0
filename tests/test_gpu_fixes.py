"""The device-path findings of issue 17: one CPU test per finding wherever the logic allows, named after it.

GPU-only checks of the same findings live in tests/test_gpu_fixes_cuda.py (marker ``gpu``, skipped without CUDA).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from inference.core.errors import UserError
from inference.engine import index_limit
from inference.engine.cuda_errors import (
    is_out_of_memory,
    is_retryable_batch_error,
    is_sticky_cuda_error,
)
from inference.engine.index_limit import INDEX_LIMIT, PeakTensor
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network

from .conftest import small_module, yuv8_to_rgb_reference


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


# ------------------------------------------------------------------------------------------ 1: 32-bit index math
def test_finding_01_batch_cap_by_element_count_at_4k():
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


def test_finding_01_stylizer_splits_batches_over_the_index_limit(monkeypatch, make_image):
    torch.manual_seed(0)
    st = Stylizer(build_network("tiny"), RuntimeOptions(device="cpu", batch_size=8, backend="torch"))
    reference = list(st.frames(make_image(32, 48, seed=i) for i in range(8)))
    sizes: list[int] = []
    # (The shape probe runs a meta-device copy, hooks included: only real batches count.)
    st.network.register_forward_hook(lambda _m, x, _o: None if x[0].is_meta else sizes.append(x[0].shape[0]))
    # The cap the Stylizer applies on CUDA, forced here on the CPU with a limit three frames wide.
    st.index_limited = True
    monkeypatch.setattr(index_limit, "INDEX_LIMIT", 3 * PeakTensor(st.network).elements(32, 48))
    out = list(st.frames(make_image(32, 48, seed=i) for i in range(8)))
    assert max(sizes) == 3 and sum(sizes) == 8 and st.batch_size == 3
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(out, reference, strict=True))
    # Stylizer.tensors too (device tensors, e.g. from a GPU decoder): chunks of at most the cap.
    sizes.clear()
    st.batch_size = 8
    batch = torch.from_numpy(np.stack([make_image(32, 48, seed=i) for i in range(8)]))
    assert st.tensors(batch).shape == (8, 32, 48, 3) and max(sizes) == 3 and sum(sizes) == 8
    sizes.clear()
    st.tensors(batch.permute(0, 3, 1, 2).float() / 255)
    assert max(sizes) == 3 and sum(sizes) == 8


def test_finding_01_index_overflow_error_halves_the_batch(make_image):
    net = _RaiseAbove(2, RuntimeError("input tensor must fit into 32-bit index math"))
    st = Stylizer(net, RuntimeOptions(device="cpu", batch_size=8))
    frames = [make_image(16, 24, seed=i) for i in range(8)]
    assert [f.shape for f in st.frames(frames)] == [f.shape for f in frames]
    assert st.batch_size == 2 and net.sizes[:3] == [8, 4, 2]
    with pytest.raises(UserError, match="32-bit index limit even for one 24x16 frame"):
        list(
            Stylizer(
                _RaiseAbove(0, RuntimeError("must fit into 32-bit index math")), RuntimeOptions(device="cpu")
            ).frames(frames)
        )


# ------------------------------------------------------------------------------------------ 6: I420 heights
def test_finding_06_i420_accepts_heights_two_mod_four():
    st = Stylizer(build_network("identity"), RuntimeOptions(device="cpu"))
    from inference.core.colour import YuvSpec

    for height in (34, 36):  # 34 = 2 (mod 4), like 1280x534 and 1920x802
        planes = torch.full((1, height * 3 // 2, 64), 128, dtype=torch.uint8)
        assert st.tensors(planes, yuv_in=YuvSpec()).shape == (1, height, 64, 3)
    with pytest.raises(UserError, match="I420 input"):
        st.tensors(torch.zeros(1, 50, 64, dtype=torch.uint8), yuv_in=YuvSpec())  # 50 rows: not H * 3 / 2


# ------------------------------------------------------------------------------------------ 12: out of memory
def test_finding_12_allocation_failures_of_every_kind_halve_the_batch(monkeypatch, make_image):
    frames = [make_image(16, 24, seed=i) for i in range(4)]
    for error in (
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ):
        net = _RaiseAbove(1, error)
        st = Stylizer(net, RuntimeOptions(device="cpu", batch_size=4))
        assert len(list(st.frames(frames))) == 4 and st.batch_size == 1, error
    # torch before 2.5 has no torch.OutOfMemoryError: the check must not depend on it.
    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    st = Stylizer(
        _RaiseAbove(1, torch.cuda.OutOfMemoryError("CUDA out of memory")), RuntimeOptions(device="cpu", batch_size=2)
    )
    assert len(list(st.frames(frames))) == 4
    # Anything else still fails at once instead of being retried.
    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(
            Stylizer(_RaiseAbove(0, RuntimeError("shape mismatch")), RuntimeOptions(device="cpu", batch_size=4)).frames(
                frames
            )
        )


# ------------------------------------------------------------------------------------------ 13: sticky errors
def test_finding_13_sticky_cuda_errors_are_told_apart():
    sticky = RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be ...")
    assert is_sticky_cuda_error(sticky) and not is_retryable_batch_error(sticky)
    assert is_sticky_cuda_error(RuntimeError("CUDA error: device-side assert triggered"))
    wrapped = ValueError("stylizing failed")
    wrapped.__cause__ = RuntimeError("CUDA error: unspecified launch failure")
    assert is_sticky_cuda_error(wrapped)
    assert not is_sticky_cuda_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_sticky_cuda_error(UserError("a.mp4: not a video"))


# ------------------------------------------------------------------------------------------ 15: bf16
def test_finding_15_bf16_only_where_native(monkeypatch):
    from inference.engine import precision

    cuda = torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what emulation reports too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # Turing: emulated
    assert not precision.bf16_native(cuda)
    with pytest.raises(UserError, match="bf16 is not supported natively"):
        precision.resolve_precision("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # Ampere: native
    assert precision.bf16_native(cuda) and precision.resolve_precision("bf16", cuda) == torch.bfloat16
    assert not precision.bf16_native(torch.device("cpu"))


# ------------------------------------------------------------------------------------------ 17: precision probe
def test_finding_17_precision_probe_runs_the_configured_network(monkeypatch):
    import inference.engine.stylizer as stylizer_module
    from inference.engine.precision import PrecisionReport, probe_input

    seen = {}

    def fake_choose(network, precision, device, runner=None):
        probe = network.__class__(**network.config)  # a copy, as the real probe casts copies
        probe.load_state_dict(network.state_dict())
        seen["style"] = network.style_weights.tolist()

        def hook(_m, inputs, _o):
            seen["size"] = tuple(inputs[0].shape[-2:])
            seen["channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)

        probe.register_forward_hook(hook)
        runner(probe)(probe_input(device))
        return PrecisionReport("fp32", "requested")

    monkeypatch.setattr(stylizer_module, "choose_precision", fake_choose)
    net = build_network("tiny", num_styles=2)
    Stylizer(net, RuntimeOptions(device="cpu", style="1", channels_last=True, stroke_scale=2.0))
    assert seen == {"style": [0.0, 1.0], "size": (64, 96), "channels_last": True}


# ------------------------------------------------------------------------------------------ 5: RAFT workers
def test_finding_05_raft_loaders_spawn_their_workers(tmp_path, make_image_folder, make_video):
    from styletrain.data.module import StyleDataModule, worker_context

    assert worker_context("raft", 2) == "spawn" and worker_context("raft_small", 1) == "spawn"
    assert worker_context("dis", 2) is None and worker_context("raft", 0) is None
    clip = make_video(tmp_path / "pairs.mp4", n_frames=4, audio=False)
    dm = StyleDataModule(
        path=str(make_image_folder(tmp_path / "img", 4)), video_pairs=[str(clip)], video_pair_ratio=0.5,
        flow_method="raft", num_workers=1, val_size=1,
    )  # fmt: skip
    mixed = dm.train_dataloader()  # no flow is estimated (and no worker started) until the loaders are iterated
    assert mixed.pairs.multiprocessing_context is not None
    assert mixed.pairs.multiprocessing_context.get_start_method() == "spawn"
    assert mixed.still.multiprocessing_context is None and dm.val_dataloader().multiprocessing_context is None


# ------------------------------------------------------------------------------------------ 9: training syncs
def test_finding_09_frozen_balance_never_reads_the_device():
    from styletrain.temporal.balance import TemporalBalance

    balance = TemporalBalance(0.5, steps=2)
    for _ in range(2):
        balance.observe(torch.tensor(2.0), torch.tensor(1.0))
    # Make any further read of the buffer fail: a meta tensor has no value to turn into a Python int.
    balance.seen = torch.empty((), dtype=torch.long, device="meta")
    assert balance.frozen is True
    balance.observe(torch.tensor(9.0), torch.tensor(1.0))  # a no-op, without touching the buffer
    # Loading a state dict makes the host copy stale: it is read again from the loaded buffer.
    fresh = TemporalBalance(0.5, steps=2)
    assert fresh.frozen is False
    done = TemporalBalance(0.5, steps=2)
    for _ in range(2):
        done.observe(torch.tensor(2.0), torch.tensor(1.0))
    fresh.load_state_dict(done.state_dict())
    assert fresh.frozen is True
    import pickle

    assert pickle.loads(pickle.dumps(done)).frozen is True  # no hook that would stop ddp_spawn from pickling it


def test_finding_09_frozen_perceptual_balance_never_reads_the_device():
    from styletrain.loss_scale import PerceptualBalance

    terms = {"ref_content": torch.tensor(1.0), "ref_style": torch.tensor(2.0), "ref_tv": torch.tensor(3.0)}
    balance = PerceptualBalance(1.0, 0.5, steps=2)
    for _ in range(2):
        balance.observe(terms)
    balance.seen = torch.empty((), dtype=torch.long, device="meta")  # any read of the buffer now fails
    assert balance.frozen is True
    balance.observe(terms)
    fresh, done = PerceptualBalance(1.0, 0.5, steps=2), PerceptualBalance(1.0, 0.5, steps=2)
    assert fresh.frozen is False
    for _ in range(2):
        done.observe(terms)
    fresh.load_state_dict(done.state_dict())
    assert fresh.frozen is True


def test_finding_09_progress_bar_loss_only_on_logging_steps(style_path, content):
    module = small_module(style_path, style_layers=("relu1_2",))
    logged: list[tuple[str, bool, int]] = []
    step = {"i": 0}
    module.log = lambda name, value, prog_bar=False, **kw: logged.append((name, prog_bar, step["i"]))
    module.log_dict = lambda *a, **k: None
    optimizer = torch.optim.Adam(module.net.parameters())
    module.optimizers = lambda: optimizer
    module.trainer = SimpleNamespace(log_every_n_steps=3, global_step=0)
    for i in range(6):
        step["i"] = i
        module.training_step({"content": content}, i)
    bar_steps = [s for name, bar, s in logged if bar]
    assert bar_steps == [0, 2, 5]  # first step, then every log_every_n_steps: not every step
    assert [s for name, bar, s in logged if name == "train/total" and not bar] == list(range(6))


# ------------------------------------------------------------------------------------------ 10: DDP callback
def test_finding_10_clip_callback_reads_log_dir_on_every_rank(tmp_path, make_image):
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


# ------------------------------------------------------------------------------------------ 11: channels_last
def test_finding_11_channels_last_is_advised_only_with_compile():
    """The CUDA reflection-pad kernel returns NCHW (checked on a GPU in test_gpu_fixes_cuda.py), so eager
    channels_last converts layouts around every padded convolution: the config must not advise it for GPUs."""
    import yaml

    root = Path(__file__).parents[1]
    text = (root / "configs/default.yaml").read_text()
    assert yaml.safe_load(text)["model"]["channels_last"] is False
    assert "true on GPUs: faster" not in text and "only with compile" in text
    from styletrain.module import StyleTransferModule

    assert "only together with ``compile``" in " ".join(StyleTransferModule.__doc__.split())


# ------------------------------------------------------------------------------------------ 2: device selection
@pytest.fixture
def unbound():
    """Leave no worker binding behind: media GPU bound in a throwaway context, and this process back to "not a pool
    worker" (all host threads) before and after the test."""
    import contextvars

    from inference.core import devices

    context = contextvars.copy_context()
    context.run(devices.bind_worker, "cpu", None)
    yield context
    context.run(devices.bind_worker, "cpu", None)


def _hwaccel_opens(monkeypatch, decode_on_hw: bool) -> list:
    """Pretend FFmpeg was built with CUDA; record the ``HWAccel`` of every ``av.open`` that asks for one, which then
    fails as NVDEC does without a GPU (``decode_on_hw`` False) or opens the file without it (a silent software
    fallback, ``decode_on_hw`` True)."""
    import av
    from av.codec import hwaccel

    asked: list = []
    real_open = av.open

    def open_(*args, hwaccel=None, **kwargs):
        if hwaccel is not None:
            asked.append(hwaccel)
            if not decode_on_hw:
                raise RuntimeError("Hardware accelerated decode requested but no stream is compatible")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(hwaccel, "hwdevices_available", lambda: ["cuda"])
    monkeypatch.setattr(av, "open", open_)
    return asked


def test_finding_02_worker_maps_to_its_physical_gpu(monkeypatch, unbound, tmp_path, make_video):
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
    asked = _hwaccel_opens(monkeypatch, decode_on_hw=False)

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


def test_finding_02_stage_events_are_recorded_on_the_devices_stream(monkeypatch):
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


def test_finding_02_stylize_file_binds_the_stylizers_gpu(monkeypatch, unbound, tmp_path):
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


# ------------------------------------------------------------------------------------------ 3: NVDEC fallback
def test_finding_03_nvdec_decided_from_the_first_frame_not_is_hwaccel(monkeypatch, tmp_path, make_video):
    from inference.io.video_reader import VideoSource, decoded_on_nvdec

    # A hardware device attached, but the software decoder produced the frame: not NVDEC.
    assert not decoded_on_nvdec(True, "yuv420p", "yuv420p")
    assert decoded_on_nvdec(True, "cuda", "nv12") and decoded_on_nvdec(True, "cuda", "cuda")
    assert not decoded_on_nvdec(False, "cuda", "nv12")
    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)
    asked = _hwaccel_opens(monkeypatch, decode_on_hw=True)  # NVDEC asked for, software frames out
    source = VideoSource(clip)
    source.close()
    assert len(asked) == 1 and source.decoder == "h264 (software, auto threads)"
    # The name on a real NVDEC decode is checked on a GPU (test_gpu_fixes_cuda.py, finding 03).


def test_finding_03_nvdec_threads_keep_surfaces_within_32(monkeypatch, unbound):
    from inference.core import devices

    monkeypatch.setattr(devices.os, "cpu_count", lambda: 64)
    assert devices.decoder_threads(nvdec=True) + 16 + 2 <= devices.NVDEC_MAX_SURFACES
    assert devices.decoder_threads(nvdec=False) == 0  # software outside a pool: FFmpeg's automatic count


def test_finding_03_software_decode_is_named_software(tmp_path, make_video, caplog):
    from inference.io.video_reader import VideoSource

    clip = make_video(tmp_path / "c.mp4", n_frames=4, audio=False)
    with caplog.at_level("INFO", logger="inference.io.video_reader"):
        source = VideoSource(clip)
    try:
        # No GPU here: whether or not FFmpeg has CUDA, the log names the path that really decoded.
        assert "software" in source.decoder and "NVDEC" not in caplog.text
        assert len(list(source.frames())) == 4
    finally:
        source.close()


# ------------------------------------------------------------------------------------------ 13: sticky errors
class _Sticky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_finding_13_in_process_worker_retires_after_a_sticky_error(monkeypatch, tmp_path, make_video):
    import inference.app.local_executor as local_executor
    from inference.app.jobs import Job

    net = _Sticky()
    monkeypatch.setattr(
        local_executor, "load_stylizer", lambda model, *a, **k: Stylizer(net, RuntimeOptions(device="cpu"))
    )
    clip = make_video(tmp_path / "c.mp4", n_frames=2, audio=False)
    tasks = [(i, Job(clip, tmp_path / f"o{i}.mp4")) for i in range(3)]
    reports: dict = {}
    executor = local_executor.LocalExecutor("m", ["cpu"], {}, {})
    executor.start()
    executor.run(tasks, lambda i, outcome: reports.__setitem__(i, outcome))
    assert net.calls == 1  # the two later files were not attempted on the broken context
    assert reports[0].retire and "takes no more files" in reports[0].message
    assert [reports[i].status for i in (1, 2)] == ["failed", "failed"]
    assert all("failed on an earlier file" in reports[i].message for i in (1, 2))


def test_finding_13_pool_worker_leaves_the_queue_after_a_sticky_error(monkeypatch, unbound, tmp_path, make_video):
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
    seat, spec = worker_pool.Seat(0, "cpu", 1), worker_pool.PoolSpec("m", {}, {}, quiet=True)
    unbound.run(worker_pool.serve, seat, spec, tasks, results)
    messages = [results.get_nowait() for _ in range(results.qsize())]
    assert [m[0] for m in messages] == ["start", "done"] and messages[1][3].retire
    assert tasks.qsize() == 3  # two files and the end marker, left to the other workers


# ------------------------------------------------------------------------------------------ 14: host threads
def test_finding_14_gpu_workers_share_the_host_cores(unbound, tmp_path, make_video):
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


# ------------------------------------------------------------------------------------------ 4: colour host copies
def test_finding_04_colour_matrices_are_made_once_per_device(monkeypatch):
    from inference.core.colour import YuvSpec, i420_to_rgb, rgb_to_i420

    inverted: list[torch.Tensor] = []
    inv = torch.linalg.inv
    monkeypatch.setattr(torch.linalg, "inv", lambda a: (inverted.append(a), inv(a))[1])
    spec = YuvSpec("bt2020", full_range=True, chroma_left=True)
    planes = torch.randint(0, 256, (2, 24, 32), dtype=torch.uint8)
    for _ in range(4):  # four batches, in and out
        rgb_to_i420(i420_to_rgb(planes, spec), spec)
    # The RGB -> YUV matrix is made (and, on a GPU, copied to it) once per spec and device, not once per batch (at
    # most once here: an earlier test may have converted with this spec already).
    assert len(inverted) <= 1


# ------------------------------------------------------------------------------------------ 16: chroma siting
def test_finding_16_left_sited_chroma_matches_swscale_on_a_decoded_h264_frame(tmp_path, make_video):
    """swscale interpolates a decoded H.264 frame's chroma at its left siting (full chroma interpolation, accurate
    rounding): the YUV path must see the same RGB. Repetition (centre siting) was off by levels, tens at edges."""
    import dataclasses

    import av
    from av.video.reformatter import Interpolation

    from inference.core.colour import i420_to_rgb
    from inference.io.video_reader import VideoSource

    clip = make_video(tmp_path / "c.mp4", n_frames=1, size=(160, 120), audio=False)
    source = VideoSource(clip, planes=True, hwaccel=False)
    try:
        spec, planes = source.info.yuv, next(iter(source.frames())).array
    finally:
        source.close()
    assert spec.chroma_left  # H.264: left-sited
    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
        flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
        sws = frame.reformat(
            format="rgb24", src_colorspace="smpte170m", src_color_range="MPEG", dst_color_range="JPEG",
            interpolation=flags,
        ).to_ndarray().astype(float)  # fmt: skip

    def error(s) -> np.ndarray:
        ours = (i420_to_rgb(torch.from_numpy(planes)[None], s)[0].permute(1, 2, 0).double() * 255).round().numpy()
        return np.abs(ours - sws)[2:-2, 2:-2]  # swscale treats the outermost pixels its own way

    left = error(spec)
    assert left.mean() < 0.05 and left.max() <= 1
    centre = error(dataclasses.replace(spec, chroma_left=False))
    assert centre.mean() > 0.3 and centre.max() >= 10  # what the old repetition gave


def test_finding_16_left_sited_downsampling_keeps_a_ramp_in_place():
    """A chroma ramp along x comes out sampled at the even columns (left siting), not half a pixel to the right."""
    from inference.core.colour import YuvSpec, rgb_to_i420

    h, w = 8, 32
    x = torch.arange(w, dtype=torch.float64)
    yuv = torch.stack((torch.full((h, w), 120.0, dtype=torch.float64), (100 + 4 * x).expand(h, w),
                       torch.full((h, w), 128.0, dtype=torch.float64)))  # fmt: skip
    a, b = (torch.from_numpy(m) for m in yuv8_to_rgb_reference("bt709", full_range=False))
    rgb = (torch.einsum("ij,jhw->ihw", a, yuv) + b[:, None, None]).float()[None]
    for left, shift in ((True, 0.0), (False, 0.5)):
        out = rgb_to_i420(rgb, YuvSpec("bt709", chroma_left=left))[0]
        u = out[h : h + h // 4].reshape(h // 2, w // 2)[0].double()
        expected = 100 + 4 * (2 * torch.arange(w // 2, dtype=torch.float64) + shift)
        assert (u[1:-1] - expected[1:-1]).abs().max() <= 1.0, left


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
def test_finding_10_clip_callback_on_two_gloo_processes(tmp_path):
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
