"""The consistency stage's flow (inference/engine/device_flow.py): RAFT in batches of pairs on a device, the choice
between RAFT and DIS with one log line when DIS stands in, RAFT weight files, and the fallback when RAFT fails."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.optical_flow import raft_small

from inference.core.errors import OptionError
from inference.core.stages import StageClock
from inference.engine.consistency import ConsistencyStage
from inference.engine.device_flow import (
    DisFlow,
    FallbackFlow,
    RaftFlow,
    cached_raft,
    choose_flow,
    hub_weights_file,
    load_raft_file,
    raft_size,
)
from inference.engine.flow import to_gray
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer

from .conftest import run_cli

LOGGER = "inference.engine.device_flow"


def _random_raft(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return raft_small(weights=None)


@pytest.fixture(scope="module")
def raft_file(tmp_path_factory) -> str:
    """A raft_small state dict with random weights, saved as torch.save writes it (what --flow-weights reads)."""
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(_random_raft().state_dict(), path)
    return str(path)


def _noisy(items):
    """A stylizer that flickers: each frame plus fresh noise (seeded)."""
    rng = np.random.default_rng(0)
    for frame, meta in items:
        noise = rng.normal(0, 20, frame.shape)
        yield np.clip(frame + noise, 0, 255).astype(np.uint8), meta


class ConstantFlow(nn.Module):
    """Stands in for RAFT: a flow of (1, 2) pixels everywhere, at whatever size it is given (a list, as RAFT's)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, ...]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
        self.sizes.append(tuple(a.shape))
        flow = torch.ones(a.shape[0], 2, *a.shape[-2:])
        flow[:, 1] = 2.0
        return [flow]


def test_raft_size_is_half_size_in_multiples_of_8_and_at_least_128():
    assert raft_size(1080, 1920) == (544, 960)
    assert raft_size(360, 640) == (176, 320)  # 180 rounds to a multiple of 8
    assert raft_size(48, 80) == (128, 128)  # small frames are estimated enlarged
    assert all(side % 8 == 0 for side in raft_size(333, 777))


def test_flow_comes_back_in_pixels_of_the_frame():
    """At the estimation size the flow is (1, 2) px; brought back to the frame it is scaled by the size ratio."""
    model = ConstantFlow()
    raft = RaftFlow(model, "cpu")
    frames = torch.rand(3, 3, 360, 640) * 2 - 1
    ahead, back = raft.pairs(frames)
    assert model.sizes == [(4, 3, 176, 320)]  # one batch: 2 pairs forward and backward
    assert ahead.shape == back.shape == (2, 2, 360, 640) and ahead.dtype == torch.float32
    assert torch.allclose(ahead[:, 0], torch.tensor(640 / 320)) and torch.allclose(
        ahead[:, 1], torch.tensor(2 * 360 / 176)
    )


class MarkerFlow(nn.Module):
    """Stands in for RAFT: u = mean(first) - mean(second) per image, so the result tells which frame came first."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
        u = (a.mean((1, 2, 3)) - b.mean((1, 2, 3))).view(-1, 1, 1, 1)
        return [torch.cat((u, torch.zeros_like(u)), 1).expand(-1, 2, *a.shape[-2:])]


def test_pair_returns_backward_then_forward_and_uploads_each_frame_once(monkeypatch):
    bright, dark, mid = (np.full((16, 16, 3), v, np.uint8) for v in (255, 0, 128))
    raft = RaftFlow(MarkerFlow(), "cpu")
    uploads = []
    monkeypatch.setattr(torch, "from_numpy", lambda a, f=torch.from_numpy: uploads.append(int(a[0, 0, 0])) or f(a))
    back, ahead = raft.pair(bright, dark, None, None)  # prev = bright, frame = dark
    assert ahead[0, 0, 0, 0] == pytest.approx(2.0 * 16 / 128) and back[0, 0, 0, 0] == pytest.approx(-2.0 * 16 / 128)
    raft.pair(dark, mid, None, None)
    assert uploads == [255, 0, 128]  # dark, uploaded as the first pair's later frame, is reused


class Difference(nn.Module):
    """Stands in for RAFT: the "flow" is the first two colour channels of ``first - second``, pixel by pixel, so each
    pair's result depends on exactly its two frames."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
        return [(a - b)[:, :2]]


class Counting(nn.Module):
    """Wraps a flow model and records the batch size of every call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.batches = inner, []

    def forward(self, a: torch.Tensor, b: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
        self.batches.append(a.shape[0])
        return self.inner(a, b, num_flow_updates=num_flow_updates)


def test_announced_frames_go_through_raft_in_one_batch(make_clip_frames):
    frames = make_clip_frames(6, size=(48, 64), shift=(2, 1))
    model = Counting(Difference())
    batched, single = RaftFlow(model, "cpu"), RaftFlow(model.inner, "cpu")
    for frame in frames:
        batched.show(frame)
    got = [batched.pair(a, b, None, None) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    assert model.batches == [8, 2]  # pairs 1-4 forward and backward in one batch, then the fifth
    for a, b, (back, ahead) in zip(frames[:-1], frames[1:], got, strict=True):
        one_back, one_ahead = single.pair(a, b, None, None)
        assert torch.equal(back, one_back) and torch.equal(ahead, one_ahead) and ahead.abs().max() > 0.1


def test_a_batch_out_of_memory_goes_on_one_pair_at_a_time():
    class Tight(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor, num_flow_updates: int = 12) -> list[torch.Tensor]:
            if a.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
            return MarkerFlow()(a, b)

    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 255, 0, 255)]
    raft = RaftFlow(Tight(), "cpu")
    for frame in frames:
        raft.show(frame)
    aheads = [raft.pair(a, b, None, None)[1][0, 0, 0, 0].item() for a, b in zip(frames[:-1], frames[1:], strict=True)]
    assert raft.max_pairs == 1 and aheads == pytest.approx([-0.25, 0.25, -0.25])


def test_random_raft_pair_on_the_cpu(make_clip_frames):
    a, b = make_clip_frames(2, size=(48, 80), shift=(2, 1))
    raft = RaftFlow(_random_raft(), "cpu", updates=2)
    back, ahead = raft.pair(a, b, to_gray(a), to_gray(b))
    for flow in (back, ahead):
        assert flow.shape == (1, 2, 48, 80) and flow.dtype == torch.float32 and flow.device.type == "cpu"
        assert torch.isfinite(flow).all()
    assert not torch.equal(back, ahead)
    assert raft.label == "RAFT on cpu"


def test_stage_runs_end_to_end_with_raft(make_clip_frames):
    frames = make_clip_frames(4, size=(48, 64), shift=(2, 1))
    calls = []
    raft = RaftFlow(_random_raft(), "cpu", updates=2, name="raft_small (random)")
    pair = raft.pair
    raft.pair = lambda *args: calls.append(1) or pair(*args)
    clock = StageClock()
    stage = ConsistencyStage(0.8, clock=clock, flow=raft)
    out = [frame for frame, _ in stage.run(((f, i) for i, f in enumerate(frames)), _noisy)]
    assert len(out) == 4 and all(o.shape == (48, 64, 3) and o.dtype == np.uint8 for o in out)
    assert len(calls) == 3  # one pair per frame after the first
    assert clock.busy["flow"] > 0 and clock.notes["flow"] == "raft_small (random) on cpu"
    assert "flow: raft_small (random) on cpu" in clock.table(1.0)


def test_weight_files_round_trip_and_bad_ones_are_one_line_errors(raft_file, tmp_path):
    model, variant = load_raft_file(raft_file)
    assert variant == "raft_small"
    expected = _random_raft().state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    for path, message in [
        (tmp_path / "missing.pth", "no such file"),
        (tmp_path / "junk.pth", "not a readable torch state dict"),
        (tmp_path / "other.pth", "not a torchvision RAFT state dict"),
    ]:
        with pytest.raises(OptionError, match=message) as exc:
            load_raft_file(path)
        assert exc.value.field == "flow_weights" and str(exc.value).startswith(f"flow_weights {path}: ")
        assert "\n" not in str(exc.value)


def test_cached_weights_load_the_usual_way_and_are_never_downloaded(raft_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    assert cached_raft() is None
    hub_weights_file().parent.mkdir(parents=True)
    hub_weights_file().write_bytes(open(raft_file, "rb").read())
    model = cached_raft()  # through torchvision's Raft_Small_Weights.DEFAULT, from the cache
    assert torch.equal(model.state_dict()["feature_encoder.convnormrelu.0.weight"],
                       _random_raft().state_dict()["feature_encoder.convnormrelu.0.weight"])  # fmt: skip


def test_cpu_default_is_dis_without_a_word(caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        choice = choose_flow(torch.device("cpu"))
    assert isinstance(choice.estimator, DisFlow) and choice.reason is None
    assert caplog.records == []


def test_weights_off_cuda_give_dis_with_one_line(raft_file, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        choice = choose_flow(torch.device("cpu"), raft_file)
    assert isinstance(choice.estimator, DisFlow)
    assert [r.getMessage() for r in caplog.records] == [
        "consistency: optical flow runs with OpenCV DIS (medium, x0.5) on the CPU: the device is cpu, and RAFT runs "
        "here only on CUDA"
    ]


def test_gpu_without_weights_falls_back_to_dis_with_one_line(tmp_path, monkeypatch, caplog, make_clip_frames):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        choice = choose_flow(torch.device("cuda"))
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert "no RAFT weights" in choice.reason and "give `flow_weights` a RAFT state dict" in choice.reason
    assert caplog.records[0].mentions == ("flow_weights",)  # stylize-video writes it as --flow-weights
    frames = make_clip_frames(3, size=(48, 64), shift=(2, 1))

    def run(flow):
        stage = ConsistencyStage(0.8, flow=flow)
        return [f for f, _ in stage.run(((f, None) for f in frames), _noisy)]

    # The fallback is the stage's own DIS: the same output, bit for bit.
    assert all(np.array_equal(x, y) for x, y in zip(run(choice.estimator), run(None), strict=True))


def test_raft_failing_mid_run_falls_back_once(make_clip_frames, caplog):
    class Broken(nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    frames = make_clip_frames(4, size=(48, 64), shift=(2, 1))
    flow = FallbackFlow(RaftFlow(Broken(), "cpu"), DisFlow())
    clock = StageClock()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        out = [f for f, _ in ConsistencyStage(0.8, clock=clock, flow=flow).run(((f, None) for f in frames), _noisy)]
    assert len(out) == 4
    assert [r.getMessage() for r in caplog.records] == [
        "consistency: RAFT failed (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB); optical flow "
        "continues with OpenCV DIS (medium, x0.5) on the CPU"
    ]
    assert clock.notes["flow"].startswith("OpenCV DIS (medium, x0.5) on the CPU (RAFT failed: RuntimeError")


# ------------------------------------------------------------------------- through the Stylizer and stylize-video
def _stylizer(**fields) -> Stylizer:
    return Stylizer(nn.Identity(), RuntimeOptions(backend="torch", **fields))


def test_cpu_stylizer_uses_dis_without_a_word_and_stats_name_it(make_clip_frames, caplog):
    frames = make_clip_frames(3, size=(48, 64), shift=(2, 1))
    with caplog.at_level(logging.DEBUG, logger="inference"):
        stylizer = _stylizer(device="cpu", consistency=0.8)
        clock = StageClock()
        out = [f for f, _ in stylizer.process(((f, None) for f in frames), clock=clock)]
    assert len(out) == 3 and [r for r in caplog.records if r.levelno >= logging.INFO] == []
    assert clock.notes == {"flow": "OpenCV DIS (medium, x0.5) on the CPU"}


def test_stats_line_names_the_flow(tmp_path, make_video, model, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=4, audio=False)
    assert run_cli(src, "-m", model, "-o", tmp_path / "out.mp4", "--device", "cpu", "--stats", "-q") == 0
    assert "flow: OpenCV DIS (medium, x0.5) on the CPU" in capsys.readouterr().err.splitlines()


def test_bad_flow_weights_are_one_line_exit_2(tmp_path, model, capsys):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    assert (
        run_cli(src, "-m", model, "-o", tmp_path / "o.png", "--device", "cpu", "--flow-weights", tmp_path / "junk.pth")
        == 2
    )
    err = capsys.readouterr().err
    assert err == f"error: --flow-weights {tmp_path / 'junk.pth'}: not a readable torch state dict (UnpicklingError)\n"
    assert not (tmp_path / "o.png").exists()


@pytest.mark.gpu
def test_stage_runs_raft_on_cuda(raft_file, make_clip_frames, caplog):
    choice = choose_flow(torch.device("cuda"), raft_file)
    assert isinstance(choice.estimator, FallbackFlow) and choice.reason is None
    ahead, back = choice.estimator.primary.pairs(torch.rand(2, 3, 72, 128, device="cuda") * 2 - 1)
    assert back.device.type == "cuda" and back.shape == (1, 2, 72, 128) and back.dtype == torch.float32
    frames = make_clip_frames(4, size=(72, 128), shift=(2, 1))
    on_gpu = RaftFlow(_random_raft(), "cuda", updates=2).pair(frames[0], frames[1], None, None)
    on_cpu = RaftFlow(_random_raft(), "cpu", updates=2).pair(frames[0], frames[1], None, None)
    for gpu_flow, cpu_flow in zip(on_gpu, on_cpu, strict=True):  # the same numbers, within TF32's rounding
        assert gpu_flow.device.type == "cuda" and torch.allclose(gpu_flow.cpu(), cpu_flow, rtol=0.05, atol=0.1)
    clock = StageClock()
    with caplog.at_level(logging.WARNING, logger="inference"):
        stylizer = _stylizer(device="cuda", consistency=0.8, flow_weights=raft_file)
        out = [f for f, _ in stylizer.process(((f, None) for f in frames), clock=clock)]
    assert len(out) == 4 and [r for r in caplog.records if r.name == LOGGER] == []  # no fallback, no warning
    assert clock.notes["flow"].startswith("raft_small from raft_small_random.pth on cuda")


@pytest.mark.slow  # a fresh interpreter importing torch: about 6 s of wall time here
def test_the_cpu_stage_never_imports_torchvision():
    """DIS needs OpenCV only: torchvision (a runtime dependency for RAFT) is imported when RAFT is built, not before."""
    script = (
        "import sys, numpy as np, torch\n"
        "from inference.engine.options import RuntimeOptions\n"
        "from inference.engine.stylizer import Stylizer\n"
        "s = Stylizer(torch.nn.Identity(), RuntimeOptions(device='cpu', backend='torch', consistency=0.8))\n"
        "list(s.frames([np.zeros((32, 32, 3), np.uint8)] * 3))\n"
        "print('torchvision' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
