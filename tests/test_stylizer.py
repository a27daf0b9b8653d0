"""The Stylizer Python API: images, batched frames, strength, colour preservation, failures, OOM, GPU path."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from inference.app.cli import main
from inference.app.convert import stylize_file
from inference.core.colour import YuvSpec, rgb_to_i420
from inference.core.devices import resolve_device
from inference.core.errors import ArtifactError, UserError
from inference.core.stages import StageClock
from inference.engine.options import RuntimeOptions
from inference.engine.precision import resolve_precision
from inference.engine.stylizer import Stylizer
from inference.model.artifact import save_artifact
from inference.model.networks import build_network


@pytest.fixture
def artifact(model) -> Path:
    """The shared tiny artifact (``model`` in conftest)."""
    return model


class _FailOnBatch(nn.Module):
    """Identity that raises on its n-th call, like a network crashing mid-video."""

    def __init__(self, fail_at: int, exc: type[BaseException] = RuntimeError) -> None:
        super().__init__()
        self.calls, self.fail_at, self.exc = 0, fail_at, exc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.exc("simulated failure")
        return x


class _OOMAbove(nn.Module):
    """Identity that raises CUDA-style out-of-memory for batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.sizes = limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("simulated OOM")
        return x


def test_image_and_frames_contract(artifact, make_image):
    st = Stylizer.from_artifact(artifact, device="cpu", batch_size=3)
    assert st.metadata.network == "tiny"
    img = make_image(45, 67)
    before = img.copy()
    out = st.image(img)
    assert out.shape == (45, 67, 3) and out.dtype == np.uint8
    assert np.array_equal(img, before)  # the caller's array is untouched
    frames = [make_image(32, 48, seed=i) for i in range(7)] + [make_image(20, 30)]  # mixed sizes
    outs = list(st.frames(iter(frames)))
    assert [o.shape for o in outs] == [f.shape for f in frames]
    single = Stylizer.from_artifact(artifact, device="cpu", batch_size=1, channels_last=False)
    # Batching and batch composition do not change the result beyond rounding (channels_last: see below).
    for a, b in zip(outs, single.frames(frames), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert st.image(make_image(20, 30)[..., 0]).shape == (20, 30, 3)  # grey accepted


def test_strength_and_preserve_color(artifact, make_image):
    img = make_image(40, 56)
    assert np.array_equal(Stylizer.from_artifact(artifact, device="cpu", strength=0.0).image(img), img)
    full = Stylizer.from_artifact(artifact, device="cpu").image(img).astype(float)
    half = Stylizer.from_artifact(artifact, device="cpu", strength=0.5).image(img).astype(float)
    assert np.abs(half - (full + img) / 2).max() <= 1.0
    kept = Stylizer.from_artifact(artifact, device="cpu", preserve_color=True).image(img).astype(float)

    def chroma(a):
        y = a @ np.array([0.299, 0.587, 0.114])
        return np.stack([a[..., 2] - y, a[..., 0] - y], -1)

    assert np.abs(chroma(kept) - chroma(img.astype(float))).mean() < np.abs(chroma(full) - chroma(img)).mean()
    assert np.abs(chroma(kept) - chroma(img.astype(float))).mean() < 3.0


def test_option_errors(artifact, tmp_path):
    with pytest.raises(UserError, match="strength"):
        Stylizer(nn.Identity(), RuntimeOptions(device="cpu", strength=1.5))
    with pytest.raises(UserError, match="needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(UserError, match="uint8"):
        Stylizer(nn.Identity(), RuntimeOptions(device="cpu")).image(np.zeros((4, 4, 3), np.float32))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError):
        Stylizer.from_artifact(bad, device="cpu")


def test_failure_mid_video_leaves_nothing(tmp_path, make_video):
    src = make_video(tmp_path / "in.mp4", n_frames=16, size=(64, 48))
    before = src.read_bytes()
    for dst in ("out.mp4", "out.gif", "frames"):
        st = Stylizer(_FailOnBatch(3), RuntimeOptions(device="cpu", batch_size=2))
        with pytest.raises(RuntimeError, match="simulated"):
            stylize_file(st, src, tmp_path / dst)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"], dst
    # Ctrl-C behaves the same.
    with pytest.raises(KeyboardInterrupt):
        stylize_file(
            Stylizer(_FailOnBatch(2, KeyboardInterrupt), RuntimeOptions(device="cpu", batch_size=2)),
            src,
            tmp_path / "o.mp4",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert src.read_bytes() == before


def test_default_batch_size_is_one_on_cpu():
    # Batch 1 measured faster per frame than batch 4 on a 2-core CPU; CUDA keeps 8 (see Stylizer's docstring).
    assert Stylizer(nn.Identity(), RuntimeOptions(device="cpu")).batch_size == 1
    assert Stylizer(nn.Identity(), RuntimeOptions(device="cpu", batch_size=3)).batch_size == 3


def test_a_running_pass_keeps_its_lowered_batch_size_to_itself(make_image):
    net = _OOMAbove(limit=2)
    st = Stylizer(net, RuntimeOptions(device="cpu", batch_size=8))
    frames = [make_image(16, 16, seed=i) for i in range(11)]
    running = st.frames(frames)
    next(running)  # the first batch failed at 8 and 4, then ran at 2
    assert net.sizes[:3] == [8, 4, 2] and st.batch_size == 8  # nothing shared changed under the running generator
    assert len(list(running)) == 10 and max(net.sizes[3:]) == 2  # the pass itself kept the smaller size
    assert st.batch_size == 2  # and the next pass starts from it


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_path(artifact, make_image, tmp_path, make_video, precision):
    cpu = Stylizer.from_artifact(artifact, device="cpu")
    gpu = Stylizer.from_artifact(artifact, device="cuda", precision=precision, batch_size=4)
    assert gpu.device.type == "cuda" and gpu.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    frames = [make_image(72, 96, seed=i) for i in range(9)]
    pairs = zip(cpu.frames(frames), gpu.frames(frames), strict=True)
    diff = np.concatenate([np.abs(a.astype(int) - b.astype(int)).ravel() for a, b in pairs])
    # Reduced precision moves a few values by a level or two; the bulk must agree and nothing may be far off.
    assert np.percentile(diff, 99.9) <= {"fp16": 2, "bf16": 4}[precision]
    assert diff.max() <= {"fp16": 6, "bf16": 12}[precision]
    src = make_video(tmp_path / "in.mp4", n_frames=10, size=(96, 64))
    result = stylize_file(gpu, src, tmp_path / "out.mp4")
    assert result.frames == 10


# ----------------------------------------------------------------------------------- identity, formats, device API
@pytest.fixture
def identity_artifact(tmp_path) -> Path:
    return save_artifact(
        tmp_path / "identity.safetensors", build_network("identity"), style_name="none", style_sha256="0" * 64,
        config={}, temporal=False,
    )  # fmt: skip


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_identity_artifact_runs_stylize_video(tmp_path, make_video, identity_artifact):
    st = Stylizer.from_artifact(identity_artifact, device="cpu")
    assert st.metadata.network == "identity" and st.backend == "torch"  # nothing for ONNX Runtime to speed up
    src = make_video(tmp_path / "in.mp4", n_frames=12, size=(96, 64))
    out = tmp_path / "out.mp4"
    assert main([str(src), "-m", str(identity_artifact), "-o", str(out), "-q", "--device", "cpu"]) == 0
    before, after = _decode(src), _decode(out)
    assert len(after) == len(before) == 12 and after[0].shape == (64, 96, 3)
    diff = np.abs(np.stack(after).astype(float) - np.stack(before).astype(float))
    assert diff.mean() < 3.0  # only the second lossy encode separates them


def test_metadata_is_always_present(artifact):
    assert Stylizer(build_network("tiny"), RuntimeOptions(device="cpu")).metadata is None
    assert Stylizer.from_artifact(artifact, device="cpu").metadata.network == "tiny"


def test_process_i420_in_and_out(make_image):
    spec = YuvSpec("bt709", full_range=False)
    rgb = torch.from_numpy(np.stack([make_image(32, 48, seed=i) for i in range(3)]))
    planes = rgb_to_i420(rgb.permute(0, 3, 1, 2).float() / 255, spec).numpy()
    st = Stylizer(build_network("identity"), RuntimeOptions(device="cpu", batch_size=2))
    clock = StageClock()
    outs = list(st.process(((p, i) for i, p in enumerate(planes)), yuv_in=spec, yuv_out=spec, clock=clock))
    assert [m for _, m in outs] == [0, 1, 2]
    for (out, _), p in zip(outs, planes, strict=True):
        assert out.shape == (48, 48) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - p).max() <= 1  # identity: the planes come back
    for stage in ("colour", "network", "colour back"):
        assert clock.busy[stage] > 0.0, stage
    rgb_out = [o for o, _ in st.process(((p, None) for p in planes), yuv_in=spec)]
    assert rgb_out[0].shape == (32, 48, 3)


def test_frames_handed_out_are_never_reused(make_image):
    st = Stylizer(build_network("identity"), RuntimeOptions(device="cpu", batch_size=2))
    frames = [make_image(16, 24, seed=i) for i in range(6)]
    kept = list(st.frames(frames))  # all kept while later batches run
    assert all(np.array_equal(a, b) for a, b in zip(kept, frames, strict=True))


def test_tensors_in_and_out(artifact, make_image):
    st = Stylizer.from_artifact(artifact, device="cpu", batch_size=2, backend="torch")
    images = np.stack([make_image(24, 40, seed=i) for i in range(3)])
    expected = np.stack(list(st.frames(images)))
    nhwc = torch.from_numpy(images.copy())
    out = st.tensors(nhwc)
    assert out.dtype == torch.uint8 and out.shape == (3, 24, 40, 3) and out.device == st.device
    assert np.abs(out.numpy().astype(int) - expected).max() <= 1
    assert torch.equal(nhwc, torch.from_numpy(images))  # not modified
    nchw = nhwc.permute(0, 3, 1, 2).double() / 255
    out_float = st.tensors(nchw)
    assert out_float.dtype == torch.float64 and out_float.shape == (3, 3, 24, 40)
    assert (out_float * 255 - torch.from_numpy(expected).permute(0, 3, 1, 2)).abs().max() <= 1.0
    spec = YuvSpec("bt601")
    planes = st.tensors(nhwc, yuv_out=spec)
    assert planes.shape == (3, 36, 40) and planes.dtype == torch.uint8
    ident = Stylizer(build_network("identity"), RuntimeOptions(device="cpu"))
    assert (ident.tensors(planes, yuv_in=spec, yuv_out=spec).int() - planes.int()).abs().max() <= 1
    for bad, kwargs in (
        (torch.zeros(2, 8, 8, 4, dtype=torch.uint8), {}),
        (torch.zeros(2, 4, 8, 8), {}),
        (torch.zeros(2, 13, 8, dtype=torch.uint8), {"yuv_in": spec}),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), {}),
        (torch.zeros(0, 3, 8, 8), {}),
    ):
        with pytest.raises(UserError):
            st.tensors(bad, **kwargs)


class _OnAccelerator(torch.Tensor):
    """A CPU tensor posing as memory on a non-CUDA accelerator (e.g. MPS): ``.numpy()`` refuses it, as torch does for
    device tensors, until ``.cpu()`` has copied it to the host."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cpu:  # the copy to the host gives a plain tensor
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {})).as_subclass(torch.Tensor)
        return super().__torch_function__(func, types, args, kwargs or {})

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert mps:0 device type tensor to numpy. Use Tensor.cpu() first")


class _AcceleratorNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.as_subclass(_OnAccelerator)


def test_non_cuda_accelerators_return_host_arrays(monkeypatch, make_image):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    # The device-to-host step of every non-CUDA device: the network's output lives "on the accelerator".
    st = Stylizer(_AcceleratorNet(), RuntimeOptions(device="cpu", backend="torch"))
    with pytest.raises(TypeError, match="mps"):
        _AcceleratorNet()(torch.zeros(1, 3, 2, 2)).numpy()
    image = make_image(12, 20)
    out = st.image(image)
    assert type(out) is np.ndarray and np.array_equal(out, image)


def test_channels_last_and_compile_paths_run(monkeypatch, artifact, make_image):
    frames = [make_image(32, 40, seed=i) for i in range(3)]
    reference = list(Stylizer.from_artifact(artifact, device="cpu", backend="torch").frames(frames))
    nhwc = Stylizer.from_artifact(artifact, device="cpu", channels_last=True, backend="torch", batch_size=2)
    conv = next(m for m in nhwc.network.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(nhwc.frames(frames), reference, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # torch.compile's graph capture (dynamo) runs for real; code generation is swapped for eager kernels here, since
    # inductor's C++ build takes about a minute on a small CPU (the slow test below runs it).
    modes, real_compile = [], torch.compile

    def eager_compile(model, mode=None):
        modes.append(mode)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    compiled = Stylizer.from_artifact(artifact, device="cpu", compile=True, channels_last=True, batch_size=2)
    assert compiled.compiled and compiled.backend == "torch" and modes == ["default"]
    for a, b in zip(compiled.frames(frames), reference, strict=True):  # 3 frames: the last batch is padded to 2
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    with pytest.raises(UserError, match="compile mode"):
        Stylizer(nn.Identity(), RuntimeOptions(device="cpu", compile="fastest"))


@pytest.mark.slow
def test_compile_with_inductor_on_cpu(artifact, make_image):
    frames = [make_image(32, 40, seed=i) for i in range(3)]
    reference = list(Stylizer.from_artifact(artifact, device="cpu", backend="torch").frames(frames))
    compiled = Stylizer.from_artifact(artifact, device="cpu", compile=True, batch_size=2)
    for a, b in zip(compiled.frames(frames), reference, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_construction_changes_no_global_state(artifact):
    before = (torch.backends.cudnn.benchmark, torch.get_num_threads(), torch.is_grad_enabled())
    Stylizer.from_artifact(artifact, device="cpu")
    assert (torch.backends.cudnn.benchmark, torch.get_num_threads(), torch.is_grad_enabled()) == before


# ------------------------------------------------------------------------------------------------------ CUDA only
@pytest.mark.gpu
def test_cuda_yuv_path_pools_and_timing(artifact, make_image):
    torch.backends.cudnn.benchmark = False
    spec = YuvSpec("bt709")
    rgb = torch.from_numpy(np.stack([make_image(64, 96, seed=i) for i in range(11)]))
    planes = rgb_to_i420(rgb.permute(0, 3, 1, 2).float() / 255, spec).numpy()
    cpu = Stylizer(build_network("identity"), RuntimeOptions(device="cpu"))
    gpu = Stylizer(build_network("identity"), RuntimeOptions(device="cuda", precision="fp32", batch_size=2))
    assert torch.backends.cudnn.benchmark is False  # constructing changed nothing global
    clock = StageClock()
    kept = list(gpu.process(((p, i) for i, p in enumerate(planes)), yuv_in=spec, yuv_out=spec, clock=clock))
    expected = list(cpu.process(((p, i) for i, p in enumerate(planes)), yuv_in=spec, yuv_out=spec))
    assert [m for _, m in kept] == list(range(11))
    for (a, _), (b, _) in zip(kept, expected, strict=True):  # frames kept across 6 batches and 3 slots are intact
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # The identity network launches no kernel, so its "network" span may read 0; every other stage moves data.
    for stage in ("upload", "colour", "colour back", "download"):
        assert clock.busy[stage] > 0.0, stage
    assert clock.busy["decode"] == clock.busy["encode"] == 0.0  # host stages are the caller's to time
    out = gpu.tensors(torch.from_numpy(planes).cuda(), yuv_in=spec)
    assert out.device.type == "cuda" and out.shape == (11, 64, 96, 3)


@pytest.mark.gpu
def test_cuda_engine_reuses_pinned_buffers(make_image):
    from inference.engine.engines import CudaEngine

    engine = CudaEngine(torch.device("cuda"), None, depth=2)
    frames = [make_image(16, 24, seed=i) for i in range(8)]
    seen, outputs = set(), []
    for i in range(0, 8, 2):
        outputs += [f for f, _ in engine.submit(frames[i : i + 2], [i, i + 1], 2, lambda b, s: b.clone())]
        seen |= {(s.host_in.data_ptr(), s.host_out.data_ptr()) for s in engine.busy}
    outputs += [f for f, _ in engine.drain()]
    assert len(seen) == 2  # two slots, each allocated once and reused
    assert all(s.host_in.is_pinned() and s.host_out.is_pinned() for s in engine.free)
    assert all(np.array_equal(a, b) for a, b in zip(outputs, frames, strict=True))


class _SlowIdentity(nn.Module):
    """Identity behind a long kernel: if a pinned buffer were reused before its batch finished, frames would mix."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.cuda._sleep(int(5e7))  # noqa: SLF001
        return x + 0.0


@pytest.mark.gpu
def test_pinned_buffers_are_reused_only_after_their_batch_finished(make_image):
    st = Stylizer(_SlowIdentity(), RuntimeOptions(device="cuda", precision="fp32", batch_size=2))
    frames = [make_image(270, 480, seed=i) for i in range(14)]
    outs = list(st.frames(frames))
    assert all(np.array_equal(a, b) for a, b in zip(outs, frames, strict=True))


@pytest.mark.gpu
def test_auto_precision_runs_the_parity_check(artifact):
    st = Stylizer.from_artifact(artifact, device="cuda")
    report = st.precision_report
    assert report.reason == "parity check" and "fp16" in report.errors
    assert all(np.isfinite(e) and e >= 0 for e in report.errors.values())
    assert st.dtype == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[report.chosen]


def test_tensors_never_returns_the_callers_tensor():
    x = torch.rand(2, 3, 8, 10)
    out = Stylizer(build_network("identity"), RuntimeOptions(device="cpu")).tensors(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
