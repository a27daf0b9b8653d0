"""The consistency stage as tensor operations (what runs on CUDA, inference/engine/device_stage.py), run on the CPU:
it agrees with the OpenCV path within one grey level; and the user's strength is applied after the stage, so that
strength 0 gives back the input exactly at every consistency level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inference.engine.consistency import (
    CONTRAST_WINDOW,
    MAX_CONTRAST_GAIN,
    ConsistencyStage,
    Motion,
    restore_contrast,
)
from inference.engine.consistency_tensor import TensorCombiner, restore_contrast_tensor
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer


class Flicker(nn.Module):
    """The frame plus fresh, seeded noise on every call: a network that flickers, the same way in two runs."""

    def __init__(self, amount: float = 0.08, seed: int = 0) -> None:
        super().__init__()
        self.amount, self.generator = amount, torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x)
        return (x + self.amount * noise).clamp(0.0, 1.0)


def _stylize(frames, *, on_device: bool, batch_size: int = 2, **options) -> list[np.ndarray]:
    stylizer = Stylizer(Flicker(), RuntimeOptions(device="cpu", backend="torch", batch_size=batch_size, **options))
    stylizer.stage_on_device = on_device
    return list(stylizer.frames(frames))


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 8, generator=gen)
    image = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return image[0].permute(1, 2, 0).numpy().astype(np.float32)


def test_contrast_restoration_matches_opencv():
    blended, current = _smooth(40, 56, 0), _smooth(40, 56, 1)
    blended = 0.5 * blended + 0.5 * current  # averaged: lower local contrast than current
    expected = restore_contrast(blended.copy(), current)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    got = restore_contrast_tensor(as_tensor(blended), as_tensor(current), CONTRAST_WINDOW, MAX_CONTRAST_GAIN)
    assert np.abs(got[0].permute(1, 2, 0).numpy() - expected).max() < 1e-4


def test_one_step_of_the_recursion_matches_the_host_path():
    h, w = 40, 56
    first, second = (np.rint(_smooth(h, w, s) * 255).astype(np.uint8) for s in (2, 3))
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.5, -0.75  # sub-pixel motion: both paths interpolate
    weight = np.ones((h, w, 1), np.float32)
    weight[:, :8] = 0.0  # newly visible: the fresh frame, bit for bit
    weight[:, 8:16] = 0.5
    host = ConsistencyStage(0.8)
    host_out = [host.combine(first, Motion(None, None)), host.combine(second, Motion(flow, weight))]
    combiner = TensorCombiner(0.8, CONTRAST_WINDOW, MAX_CONTRAST_GAIN)
    as_motion = Motion(torch.from_numpy(flow).permute(2, 0, 1)[None], torch.from_numpy(weight).permute(2, 0, 1)[None])
    outs = torch.from_numpy(np.stack([first, second]))
    tensor_out = combiner.combine(outs, [Motion(None, None), as_motion])
    tensor_out = np.rint(tensor_out.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    assert np.array_equal(tensor_out[0], host_out[0])
    diff = np.abs(tensor_out[1].astype(int) - host_out[1])
    assert diff.max() <= 1, diff.max()
    assert np.array_equal(tensor_out[1][:, :8], second[:, :8])
    assert not np.array_equal(tensor_out[1], second)  # something was carried


def test_tensor_path_agrees_with_the_opencv_path_over_a_clip(make_clip_frames):
    frames = make_clip_frames(8, size=(48, 64), shift=(2, 1))
    host = _stylize(frames, on_device=False, consistency=0.8)
    device = _stylize(frames, on_device=True, consistency=0.8)
    per_frame = _stylize(frames, on_device=False, consistency=0.0)
    assert len(device) == len(host) == len(frames)
    worst = max(int(np.abs(d.astype(int) - h).max()) for d, h in zip(device, host, strict=True))
    assert worst <= 1, worst
    assert not np.array_equal(device[-1], per_frame[-1])  # the stage did run on the tensor path


def test_tensor_path_keeps_its_history_across_batches_and_a_padded_last_batch(make_clip_frames):
    frames = make_clip_frames(7, size=(48, 64), shift=(1, 1))
    one = _stylize(frames, on_device=True, batch_size=1, consistency=0.8)
    three = _stylize(frames, on_device=True, batch_size=3, consistency=0.8)
    assert all(np.array_equal(a, b) for a, b in zip(one, three, strict=True))


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "tensor"])
@pytest.mark.parametrize("consistency", [0.8, 1.0])
def test_strength_zero_gives_the_input_exactly(make_clip_frames, on_device, consistency):
    frames = make_clip_frames(8, size=(48, 64), shift=(2, 1))
    out = _stylize(frames, on_device=on_device, consistency=consistency, strength=0.0)
    for t, (got, frame) in enumerate(zip(out, frames, strict=True)):
        assert np.array_equal(got, frame), f"frame {t} moved by up to {np.abs(got.astype(int) - frame).max()}"


def test_strength_one_is_the_stage_on_the_per_frame_output(make_clip_frames):
    """At full strength nothing changed: the stage applied to the per-frame output, as before."""
    frames = make_clip_frames(8, size=(48, 64), shift=(2, 1))
    got = _stylize(frames, on_device=False, consistency=0.8, strength=1.0, batch_size=1)
    per_frame = Stylizer(Flicker(), RuntimeOptions(device="cpu", backend="torch", batch_size=1))
    stage = ConsistencyStage(0.8)
    expected = [out for out, _ in stage.run(((f, None) for f in frames), per_frame.process)]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_intermediate_strength_mixes_the_input_into_the_steadied_output(make_clip_frames):
    frames = make_clip_frames(6, size=(48, 64), shift=(2, 1))
    full = _stylize(frames, on_device=False, consistency=0.8)
    half = _stylize(frames, on_device=False, consistency=0.8, strength=0.5)
    mixed = np.rint(0.5 * full[-1].astype(np.float32) + 0.5 * frames[-1].astype(np.float32))
    assert np.abs(half[-1].astype(int) - mixed).max() <= 1
