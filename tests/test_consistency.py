"""The consistency stage (inference/engine/consistency.py): off is per-frame, flicker falls with S, newly visible
regions take the fresh stylization, cuts reset the history; evaluate leaves cut pairs out; --stats has its rows."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inference.app.cli import main as stylize_main
from inference.app.convert import stylize_file
from inference.core.errors import OptionError
from inference.engine.consistency import ConsistencyStage
from inference.engine.flow import is_cut
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from styletrain.evaluate import main as evaluate_main
from styletrain.temporal.loss import warping_error


class Flicker(nn.Module):
    """A network that flickers: the frame plus fresh noise on every call (seeded, so two runs see the same noise)."""

    def __init__(self, amount: float = 0.08, seed: int = 0) -> None:
        super().__init__()
        self.amount = amount
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x)
        return (x + self.amount * noise).clamp(0.0, 1.0)


def _run(frames, consistency: float) -> list[np.ndarray]:
    stylizer = Stylizer(Flicker(), RuntimeOptions(device="cpu", backend="torch", batch_size=1, consistency=consistency))
    return list(stylizer.frames(frames))


def _known_flows(n: int, size: tuple[int, int], shift: tuple[int, int]):
    """The exact flows of :func:`conftest.clip_frames` (content moves by ``(-dx, -dy)`` per frame)."""
    h, w = size
    fw = np.broadcast_to(np.array([-shift[0], -shift[1]], np.float32), (h, w, 2)).copy()
    return [fw] * (n - 1), [-fw] * (n - 1)


def test_zero_is_bit_identical_to_per_frame(make_clip_frames):
    frames = make_clip_frames(5, size=(48, 64), shift=(2, 1))
    per_frame = list(Stylizer(Flicker(), RuntimeOptions(device="cpu", backend="torch")).frames(frames))
    off = _run(frames, 0.0)
    assert all(np.array_equal(a, b) for a, b in zip(per_frame, off, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(per_frame, _run(frames, 0.8), strict=True))


def test_cli_consistency_zero_matches_per_frame(tmp_path, make_clip_frames, model):
    frames = make_clip_frames(4, size=(48, 64), shift=(2, 0))
    src = tmp_path / "in"
    src.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(src / f"f{i:03d}.png")
    stylize_main([str(src), "-m", str(model), "-o", str(tmp_path / "off"), "--consistency", "0", "--device", "cpu"])
    stylize_main([str(src), "-m", str(model), "-o", str(tmp_path / "on"), "--device", "cpu"])
    expected = list(Stylizer.from_artifact(model, device="cpu").frames(frames))
    off = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((tmp_path / "off").iterdir())]
    on = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((tmp_path / "on").iterdir())]
    assert all(np.array_equal(a, b) for a, b in zip(expected, off, strict=True))
    assert np.array_equal(on[0], expected[0]) and not np.array_equal(on[-1], expected[-1])  # default is on


def test_warping_error_falls_as_strength_rises(make_clip_frames):
    size, shift, n = (64, 96), (2, 1), 8
    frames = make_clip_frames(n, size=size, shift=shift)
    flows = _known_flows(n, size, shift)
    errors = [warping_error(_run(frames, s), *flows) for s in (0.0, 0.4, 0.8, 1.0)]
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[2] < 0.35 * errors[0], errors


def _object_clip(make_image, n: int = 4, size=(144, 192), step: int = 16):
    """A still background of random 4-px blocks and a dark textured object moving right by ``step`` px per frame.

    The background's fine texture is what lets any method tell a newly visible pixel from a moved one: over a smooth
    region a wrongly carried pixel is indistinguishable (and harmless), so the test gives the stage the evidence.
    """
    h, w = size
    blocks = np.random.default_rng(3).integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    background = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)
    thing = (make_image(h // 2, w // 3, seed=11) * 0.3).astype(np.uint8)
    frames = []
    for t in range(n):
        frame = background.copy()
        frame[h // 4 : h // 4 + h // 2, 8 + step * t : 8 + step * t + w // 3] = thing
        frames.append(frame)
    return frames


def test_newly_visible_regions_take_the_fresh_stylization(make_image):
    step, (h, w) = 16, (144, 192)
    frames = _object_clip(make_image, size=(h, w), step=step)
    per_frame = _run(frames, 0.0)
    stage_out = _run(frames, 1.0)
    for t in range(1, len(frames)):
        x0 = 8 + step * (t - 1)  # the background the object uncovered at frame t: columns x0 .. x0 + step
        rows = slice(h // 4 + 4, h // 4 + h // 2 - 4)
        # Away from the object's edge the stage takes the fresh stylization exactly.
        assert np.array_equal(stage_out[t][rows, x0 : x0 + step // 2], per_frame[t][rows, x0 : x0 + step // 2]), t
        # Over the whole strip (DIS flow is smooth across the object's edge) no trail: far less than a full ghost,
        # the object's old pixels left in place.
        strip = (rows, slice(x0, x0 + step))
        error = np.sqrt(np.mean((stage_out[t][strip].astype(float) - per_frame[t][strip]) ** 2))
        ghost = np.sqrt(np.mean((per_frame[t - 1][strip].astype(float) - per_frame[t][strip]) ** 2))
        assert error < 0.25 * ghost, (t, error, ghost)
    # Elsewhere (the still background) the history was used: the output is not the per-frame one.
    assert not np.array_equal(stage_out[-1][-20:], per_frame[-1][-20:])


def test_a_cut_resets_the_history(make_clip_frames):
    shot_a = make_clip_frames(3, size=(48, 64), shift=(2, 0), seed=0)
    shot_b = [f // 3 for f in make_clip_frames(3, size=(48, 64), shift=(2, 0), seed=4)]  # another, darker shot
    assert is_cut(shot_a[-1], shot_b[0]) and not is_cut(shot_a[0], shot_a[1])
    frames = shot_a + shot_b
    per_frame = _run(frames, 0.0)
    stage = ConsistencyStage(1.0)
    net = Stylizer(Flicker(), RuntimeOptions(device="cpu", backend="torch"))
    out = [o for o, _ in stage.run(((f, i) for i, f in enumerate(frames)), net.process)]
    assert stage.cuts == 1
    assert np.array_equal(out[3], per_frame[3])  # the first frame of the new shot: fresh
    assert not np.array_equal(out[4], per_frame[4])  # and the history starts again within it


def test_a_brightened_flat_frame_is_no_cut_but_another_shot_is(make_image):
    """Fog that brightens by a few levels keeps its history: nearly all of a flat frame's histogram sits in one or two
    bins, so a bin-by-bin distance called it a cut; the earth mover's distance counts how far the mass moved."""
    noise = np.random.default_rng(0).normal(0.0, 1.5, (72, 128, 3))
    fog = np.clip(182 + noise, 0, 255).astype(np.uint8)
    brighter = np.clip(188 + noise, 0, 255).astype(np.uint8)
    assert not is_cut(fog, brighter)
    assert is_cut(fog, make_image(72, 128, seed=2))  # a textured shot after the fog
    assert is_cut(make_image(72, 128, seed=2), make_image(72, 128, seed=2) // 3)  # the same scene, far darker


def test_input_noise_under_the_floor_keeps_the_full_weight(make_clip_frames):
    """A right flow leaves a small luma difference (codec noise, resampling): those pixels keep their full weight."""
    frames = make_clip_frames(3, size=(96, 128), shift=(2, 1))
    rng = np.random.default_rng(1)
    noisy = [np.clip(f + rng.normal(0.0, 3.0, f.shape), 0, 255).astype(np.uint8) for f in frames]
    stage = ConsistencyStage(0.8)
    weights = [stage.estimate(f).weight for f in noisy][1:]
    inner = np.concatenate([w[8:-8, 8:-8].ravel() for w in weights])
    assert np.mean(inner == 1.0) > 0.9, np.mean(inner)


def test_stats_have_flow_and_consistency_rows(tmp_path, make_video, capsys):
    src = make_video(tmp_path / "in.mp4", n_frames=6, audio=False)
    stylizer = Stylizer(Flicker(), RuntimeOptions(device="cpu", backend="torch", consistency=0.8))
    res = stylize_file(stylizer, src, tmp_path / "out.mp4", stats=True)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert any(line.startswith("flow ") for line in lines) and any(line.startswith("consistency ") for line in lines)
    assert res.clock.busy["flow"] > 0 and res.clock.busy["consistency"] > 0 and res.frames == 6


def test_bad_consistency_is_one_line(tmp_path, model, capsys):
    with pytest.raises(SystemExit) as exc:
        stylize_main([str(tmp_path / "x.png"), "-m", str(model), "-o", str(tmp_path / "o.png"), "--consistency", "2"])
    assert exc.value.code == 2 and "--consistency" in capsys.readouterr().err


def test_evaluate_leaves_the_cut_pair_out_and_compares_levels(tmp_path, make_clip_frames, model, capsys):
    frames = make_clip_frames(4, size=(48, 64), shift=(2, 1)) + [
        f // 3 for f in make_clip_frames(4, size=(48, 64), shift=(1, 2), seed=5)
    ]
    clip = tmp_path / "clip"
    clip.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(clip / f"frame_{i:04d}.png")
    evaluate_main(
        ["--model", str(model), "--video", str(clip), "--vgg-weights", "random", "--device", "cpu",
         "--consistency", "0.5,1", "--ruler", "farneback"]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["cut_pairs_left_out"] == 1 and result["flow_method"] == "farneback"
    levels = result["consistency"]
    assert [row["level"] for row in levels] == [0.5, 1.0]
    for row in levels:
        assert {"warping_error_ratio", "contrast_ratio", "colourfulness_ratio", "ghosting", "time_ratio"} <= set(row)
    assert levels[1]["warping_error_ratio"] < levels[0]["warping_error_ratio"] < 1.0


def test_contrast_is_kept_while_flicker_falls(make_clip_frames):
    from styletrain.output_stats import clip_stats

    size, shift, n = (64, 96), (1, 1), 10
    frames = make_clip_frames(n, size=size, shift=shift)
    flows = _known_flows(n, size, shift)
    per_frame, steady = _run(frames, 0.0), _run(frames, 0.8)
    assert clip_stats(steady)["contrast"] >= 0.95 * clip_stats(per_frame)["contrast"]
    assert warping_error(steady, *flows) < 0.5 * warping_error(per_frame, *flows)


def test_composes_with_the_per_frame_options(make_clip_frames):
    """Strength, colour preservation and stroke scale shape the per-frame image; the stage steadies that image."""
    from inference.model.networks import build_network

    frames = make_clip_frames(4, size=(64, 96), shift=(2, 1))
    options = RuntimeOptions(strength=0.6, preserve_color=True, stroke_scale=2.0, device="cpu", backend="torch")
    torch.manual_seed(0)
    network = build_network("tiny")
    per_frame = list(Stylizer(network, options).frames(frames))
    steady = list(Stylizer(network, replace(options, consistency=0.8)).frames(frames))
    # No history yet: the options' own output (within the one level of rounding the network's output before the
    # strength mix, which the stage now comes between).
    assert np.abs(steady[0].astype(int) - per_frame[0]).max() <= 1
    assert not np.array_equal(steady[-1], per_frame[-1])
    assert np.abs(steady[-1].astype(int) - per_frame[-1]).mean() < 10  # steadied, not replaced


def test_the_per_frame_step_is_the_recursion_run_applies():
    """The webcam's one-frame-at-a-time step gives what ``run`` gives for the same sequence."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    frames = [np.roll(base, shift, axis=1) for shift in range(4)]
    outs = [np.clip(f.astype(int) + rng.integers(-30, 30, f.shape), 0, 255).astype(np.uint8) for f in frames]
    stylize = lambda items: ((outs[i], meta) for i, (_, meta) in enumerate(items))  # noqa: E731
    by_run = [r for r, _ in ConsistencyStage(0.8).run([(f, None) for f in frames], stylize)]
    stage = ConsistencyStage(0.8)
    by_step = [stage.step(f, o) for f, o in zip(frames, outs, strict=True)]
    assert all(np.array_equal(a, b) for a, b in zip(by_run, by_step, strict=True))
    assert not np.array_equal(by_step[-1], outs[-1])  # the history did pull the last frame


def test_the_stage_strength_is_checked_when_changed():
    stage = ConsistencyStage(0.5)
    stage.strength = 1.0
    assert stage.strength == 1.0
    with pytest.raises(OptionError, match=r"consistency must be in \[0, 1\], got 2"):
        stage.strength = 2.0
    assert stage.strength == 1.0
