"""Warping, occlusion masks, the temporal loss and the warping-error metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.engine.flow import occlusion_mask, warp
from styletrain.temporal.loss import TemporalLoss, clip_warping_error, downsample_flow, temporal_loss, warping_error


def _t(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


def _const_flow(u: float, v: float, n: int = 1, h: int = 40, w: int = 56) -> torch.Tensor:
    return torch.tensor([float(u), float(v)]).view(1, 2, 1, 1).expand(n, 2, h, w).clone()


def test_warp_integer_translation_is_exact(make_clip_frames):
    dx, dy = 3, 2
    f = _t(make_clip_frames(2, size=(40, 56), shift=(dx, dy)))
    flow = _const_flow(-dx, -dy)  # frame0(x) = frame1(x - (dx, dy))
    warped = warp(f[1:2], flow)
    assert torch.allclose(warped[..., dy:, dx:], f[0:1, :, dy:, dx:], atol=1e-6)
    assert warped[..., : dy - 1, :].abs().max() < 1e-6  # sources outside the frame are zeros


def test_warp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))


def test_occlusion_mask_consistent_translation():
    fw, bw = _const_flow(-3, -2), _const_flow(3, 2)
    m = occlusion_mask(fw, bw)
    assert m.shape == (1, 1, 40, 56)
    # Visible exactly where x + F(x) stays inside the frame.
    assert m[..., 2:, 3:].min() == 1 and m[..., :2, :].max() == 0 and m[..., :, :3].max() == 0


def test_occlusion_mask_flags_inconsistency_and_motion_boundaries():
    fw = _const_flow(2, 0)
    assert occlusion_mask(fw, fw).sum() == 0  # backward flow contradicts the forward one everywhere
    step = torch.zeros(1, 2, 40, 56)
    step[:, 0, :, 28:] = 4.0  # a moving object next to a static background
    bw = -warp(step, step)  # consistent where defined
    m = occlusion_mask(step, bw)
    assert m[..., 10:30, 27].max() == 0  # the boundary column is masked
    assert m[..., 10:30, 5:20].min() == 1  # static background stays visible


def test_temporal_loss_zero_when_consistent_positive_when_flickering(make_clip_frames):
    f = _t(make_clip_frames(2, size=(40, 56), shift=(2, 1)))
    flow, mask = _const_flow(-2, -1), occlusion_mask(_const_flow(-2, -1), _const_flow(2, 1))
    assert temporal_loss(f[0:1], f[1:2], flow, mask) < 1e-10
    assert temporal_loss(f[0:1], (f[1:2] * 0.8), flow, mask) > 1e-3


def test_luminance_variant_allows_input_brightness_change(make_clip_frames):
    f = _t(make_clip_frames(2, size=(40, 56), shift=(2, 1)))
    in1, in2 = f[0:1], (f[1:2] + 0.1)  # the input itself brightens
    out1, out2 = in1 * 0.5, in2 * 0.5 + 0.05  # the output follows: out2 - out1 = 0.1 where aligned
    flow = _const_flow(-2, -1)
    mask = occlusion_mask(flow, _const_flow(2, 1))
    plain = TemporalLoss(luminance=False)(out1, out2, flow, mask, in1=in1, in2=in2)["temporal"]
    lum = TemporalLoss(luminance=True)(out1, out2, flow, mask, in1=in1, in2=in2)["temporal"]
    assert plain > 5e-3 and lum < 1e-8
    with pytest.raises(ValueError, match="in1 and in2"):
        TemporalLoss(luminance=True)(out1, out2, flow, mask)


def test_feature_term_and_gradients(make_clip_frames):
    f = _t(make_clip_frames(2, size=(40, 56), shift=(4, 4)))
    flow, bw = _const_flow(-4, -4), _const_flow(4, 4)
    mask = occlusion_mask(flow, bw)
    # Features at 1/4 resolution that move with the content by exactly one feature pixel.
    feat = torch.nn.functional.avg_pool2d(f, 4)
    loss = TemporalLoss(feature=True)
    out1 = f[0:1].clone().requires_grad_(True)
    out2 = (f[1:2] * 0.9).requires_grad_(True)
    terms = loss(out1, out2, flow, mask, feat1=feat[0:1], feat2=feat[1:2])
    assert set(terms) == {"temporal", "temporal_feature"}
    assert terms["temporal_feature"] < 1e-10
    sum(terms.values()).backward()
    assert out1.grad.abs().sum() > 0 and out2.grad.abs().sum() > 0
    small_flow, small_mask = downsample_flow(flow, mask, (10, 14))
    assert torch.allclose(small_flow, _const_flow(-1, -1, h=10, w=14))
    assert small_mask[..., 0, :].max() == 0 and small_mask[..., 2:, 2:].min() == 1
    with pytest.raises(ValueError, match="features"):
        loss(out1, out2, flow, mask)


def test_temporal_loss_gives_raw_terms_and_the_feature_term_only_when_asked(make_clip_frames):
    # Unweighted: the module that owns the loss weights (absolute or calibrated) applies them.
    f = _t(make_clip_frames(2, size=(40, 56), shift=(4, 4)))
    flow, mask = _const_flow(-4, -4), occlusion_mask(_const_flow(-4, -4), _const_flow(4, 4))
    out1, out2 = f[0:1], f[1:2] * 0.9
    feat1, feat2 = torch.nn.functional.avg_pool2d(out1, 4), torch.nn.functional.avg_pool2d(out2, 4)
    plain = TemporalLoss()(out1, out2, flow, mask, feat1=feat1, feat2=feat2)
    assert set(plain) == {"temporal"}
    assert float(plain["temporal"]) == float(temporal_loss(out1, out2, flow, mask)) > 0
    small_flow, small_mask = downsample_flow(flow, mask, (10, 14))
    terms = TemporalLoss(feature=True)(out1, out2, flow, mask, feat1=feat1, feat2=feat2)
    assert float(terms["temporal_feature"]) == float(temporal_loss(feat1, feat2, small_flow, small_mask)) > 0


def test_warping_error_known_flow_consistent_vs_flicker(make_clip_frames):
    frames = make_clip_frames(5, size=(40, 56), shift=(2, 1))
    fw = [_const_flow(-2, -1)[0]] * 4
    bw = [_const_flow(2, 1)[0]] * 4
    assert warping_error(_t(frames), fw, bw) < 1e-10
    rng = np.random.default_rng(0)
    flicker = [(f * rng.uniform(0.7, 1.3)).clip(0, 255).astype(np.uint8) for f in frames]
    assert warping_error(flicker, fw, bw) > 1e-3
    with pytest.raises(ValueError, match="T-1 flows"):
        warping_error(frames, fw[:2], bw)


def test_clip_warping_error_uses_flow_of_the_input(make_clip_frames):
    frames = make_clip_frames(6, size=(64, 96), shift=(2, 1))
    floor = clip_warping_error(frames, frames, method="dis")
    # A deterministic per-pixel function of the input is as stable as the input itself.
    gamma = [((f / 255.0) ** 0.6 * 255).round().astype(np.uint8) for f in frames]
    consistent = clip_warping_error(frames, gamma, method="dis")
    rng = np.random.default_rng(1)
    flicker = [(g * rng.uniform(0.8, 1.2)).clip(0, 255).astype(np.uint8) for g in gamma]
    flickering = clip_warping_error(frames, flicker, method="dis")
    assert floor < 2e-4 and consistent < 2e-4
    assert flickering > 20 * max(consistent, 1e-5)


def test_write_mp4_uses_the_runtime_writer_and_reads_back(tmp_path, make_clip_frames):
    from styletrain.data.video_frames import read_clip
    from styletrain.temporal.callback import write_mp4

    frames = make_clip_frames(5, size=(33, 47))  # odd sides: the last row and column are dropped for yuv420p
    path = write_mp4(frames, tmp_path / "clips" / "a.mp4", fps=8)
    back = read_clip(path)
    assert len(back) == 5 and back[0].shape == (32, 46, 3)
    assert np.abs(back[2].astype(int) - frames[2][:32, :46].astype(int)).mean() < 8  # CRF 20: close to the input
    assert [p.name for p in path.parent.iterdir()] == ["a.mp4"]  # written atomically, no temporary left
