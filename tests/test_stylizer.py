"""The Stylizer Python API: images, batched frames, strength, colour preservation, failures, OOM, GPU path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inference.artifact import save_artifact
from inference.errors import ArtifactError, UserError
from inference.networks import build_network
from inference.precision import resolve_precision
from inference.stylizer import Stylizer


@pytest.fixture
def artifact(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_artifact(
        tmp_path / "tiny.safetensors", build_network("tiny"), style_name="s", style_sha256="0" * 64, config={},
        temporal=False,
    )  # fmt: skip


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
    # Batching, channels_last and batch composition do not change the result beyond rounding.
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
        Stylizer(nn.Identity(), device="cpu", strength=1.5)
    with pytest.raises(UserError, match="needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(UserError, match="uint8"):
        Stylizer(nn.Identity(), device="cpu").image(np.zeros((4, 4, 3), np.float32))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError):
        Stylizer.from_artifact(bad, device="cpu")


def test_failure_mid_video_leaves_nothing(tmp_path, make_video):
    src = make_video(tmp_path / "in.mp4", n_frames=16, size=(64, 48))
    before = src.read_bytes()
    for dst in ("out.mp4", "out.gif", "frames"):
        st = Stylizer(_FailOnBatch(3), device="cpu", batch_size=2)
        with pytest.raises(RuntimeError, match="simulated"):
            st.video(src, tmp_path / dst)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"], dst
    # Ctrl-C behaves the same.
    with pytest.raises(KeyboardInterrupt):
        Stylizer(_FailOnBatch(2, KeyboardInterrupt), device="cpu", batch_size=2).video(src, tmp_path / "o.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert src.read_bytes() == before


def test_default_batch_size_is_one_on_cpu():
    # Batch 1 measured faster per frame than batch 4 on a 2-core CPU; CUDA keeps 8 (see Stylizer's docstring).
    assert Stylizer(nn.Identity(), device="cpu").batch_size == 1
    assert Stylizer(nn.Identity(), device="cpu", batch_size=3).batch_size == 3


def test_out_of_memory_halves_batch(make_image):
    net = _OOMAbove(limit=2)
    st = Stylizer(net, device="cpu", batch_size=8)
    frames = [make_image(16, 16, seed=i) for i in range(11)]
    outs = list(st.frames(frames))
    assert st.batch_size == 2 and len(outs) == 11
    assert all(np.array_equal(a, b) for a, b in zip(outs, frames, strict=True))
    with pytest.raises(UserError, match="out of GPU memory"):
        list(Stylizer(_OOMAbove(limit=0), device="cpu", batch_size=2).frames(frames[:2]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_path(artifact, make_image, tmp_path, make_video, precision):
    cpu = Stylizer.from_artifact(artifact, device="cpu")
    gpu = Stylizer.from_artifact(artifact, device="cuda", precision=precision, batch_size=4)
    assert gpu.device.type == "cuda" and gpu.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    frames = [make_image(72, 96, seed=i) for i in range(9)]
    for a, b in zip(cpu.frames(frames), gpu.frames(frames), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0
    src = make_video(tmp_path / "in.mp4", n_frames=10, size=(96, 64))
    result = gpu.video(src, tmp_path / "out.mp4")
    assert result.frames == 10
