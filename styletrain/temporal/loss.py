"""The temporal loss and the warping-error metric (warping and occlusion masks come from :mod:`inference.engine.flow`).

Flow convention (the same everywhere in styletrain, and the MPI-Sintel ``.flo`` one): ``flow [B,2,H,W]`` in pixels,
channel 0 = x (u), channel 1 = y (v), maps frame1 to frame2 in frame1's coordinates, so that
``frame1(x) ≈ frame2(x + flow(x))``. ``mask [B,1,H,W]`` is 1 where the frame1 pixel is visible in both frames.

The warping error (Lai et al. 2018, "Learning Blind Video Temporal Consistency") lives here and only here:
:func:`pair_warping_error` for one pair, :func:`warping_error` for a clip of outputs given the input clip's flows, and
:func:`clip_warping_error` for uint8 frames (flow estimated on the INPUT frames, never on the outputs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.core.colour import luma, to_float
from inference.engine.flow import inside_mask, occlusion_mask, warp


def _masked_mean(diff_sq: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``diff_sq [B,C,H,W]`` over elements where ``mask [B,1,H,W]`` is 1 (0 when the mask is empty)."""
    mask = mask.to(diff_sq.dtype)
    denom = mask.sum() * diff_sq.shape[1]
    return (diff_sq * mask).sum() / denom.clamp_min(1.0)


def temporal_loss(
    out1: Tensor,
    out2: Tensor,
    flow: Tensor,
    mask: Tensor,
    *,
    in1: Tensor | None = None,
    in2: Tensor | None = None,
) -> Tensor:
    """Masked MSE between ``out1`` and ``warp(out2, flow)``.

    With ``in1``/``in2`` given (ReCoNet's luminance-aware variant), the output may change exactly as much as the
    input's luminance changes: the penalty is on ``(out1 - W(out2)) - (Y(in1) - W(Y(in2)))``.

    Args:
        out1, out2: ``[B,C,H,W]`` network outputs (or features) for frame1 and frame2.
        flow: ``[B,2,H,W]`` frame1 -> frame2 (pixels at this resolution).
        mask: ``[B,1,H,W]`` 1 where the frame1 pixel is visible in frame2.
        in1, in2: optional ``[B,3,H,W]`` input frames in [0,1] for the luminance term.

    Returns:
        Scalar tensor (mean over masked elements; 0 for an empty mask).
    """
    diff = out1 - warp(out2, flow)
    if in1 is not None and in2 is not None:
        y1, y2 = luma(in1.to(out1.dtype)), luma(in2.to(out1.dtype))  # as in ReCoNet's luminance-aware loss
        diff = diff - (y1 - warp(y2, flow))
    return _masked_mean(diff.float() ** 2, mask)


def downsample_flow(flow: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Resize a flow field and its mask to ``size`` (e.g. the 1/4-resolution bottleneck features).

    Flow is area-averaged and its vectors are scaled by the size ratio per axis; the mask is min-pooled so that a
    feature pixel only counts when every image pixel it covers is visible.
    """
    h, w = flow.shape[-2:]
    fh, fw = size
    small = F.interpolate(flow.float(), size=size, mode="area")
    small = small * small.new_tensor([fw / w, fh / h]).view(1, 2, 1, 1)
    small_mask = 1.0 - F.adaptive_max_pool2d(1.0 - mask.float(), size)
    return small, small_mask * inside_mask(small)


class TemporalLoss(nn.Module):
    """The raw (unweighted) temporal consistency terms: output-level, and optionally feature-level.

    The caller weighs them like every other loss term (:class:`~styletrain.module.StyleTransferModule`:
    ``temporal_weight``, ``temporal_feature_weight``, or the calibrated temporal weight).

    Args:
        feature: Add ReCoNet's term on the bottleneck features (key ``"temporal_feature"``; needs ``feat1``/``feat2``).
        luminance: Allow the output to change as much as the input's luminance changes (needs ``in1``/``in2``).

    ``forward(out1, out2, flow, mask, *, in1=None, in2=None, feat1=None, feat2=None) -> dict[str, Tensor]``: one
    scalar per term, ``"temporal"`` (the output-level masked MSE, :func:`temporal_loss`) and, with ``feature``,
    ``"temporal_feature"``.
    """

    def __init__(self, feature: bool = False, luminance: bool = False) -> None:
        super().__init__()
        self.feature = bool(feature)
        self.luminance = bool(luminance)

    def forward(
        self,
        out1: Tensor,
        out2: Tensor,
        flow: Tensor,
        mask: Tensor,
        *,
        in1: Tensor | None = None,
        in2: Tensor | None = None,
        feat1: Tensor | None = None,
        feat2: Tensor | None = None,
    ) -> dict[str, Tensor]:
        if self.luminance and (in1 is None or in2 is None):
            raise ValueError("TemporalLoss(luminance=True) needs the input frames in1 and in2")
        use_lum = self.luminance
        terms = {
            "temporal": temporal_loss(
                out1, out2, flow, mask, in1=in1 if use_lum else None, in2=in2 if use_lum else None
            )
        }
        if self.feature:
            if feat1 is None or feat2 is None:
                raise ValueError("TemporalLoss(feature=True) needs the bottleneck features feat1 and feat2")
            small_flow, small_mask = downsample_flow(flow, mask, tuple(feat1.shape[-2:]))
            terms["temporal_feature"] = temporal_loss(feat1, feat2, small_flow, small_mask)
        return terms


def pair_warping_error(out1: Tensor, out2: Tensor, flow_fw: Tensor, flow_bw: Tensor) -> Tensor:
    """Lai et al. warping error of one (batch of) output pair(s): ``sum(M (W(out2) - out1)^2) / sum(M)``.

    The mask ``M`` (:func:`occlusion_mask`) is broadcast over RGB, so this is the mean squared error per masked
    element, as in Lai et al.'s ``evaluate_WarpError.py``.

    Args:
        out1, out2: ``[B,3,H,W]`` outputs in [0,1] for frames t and t+1.
        flow_fw, flow_bw: ``[B,2,H,W]`` flows of the INPUT frames t -> t+1 and t+1 -> t.

    Returns:
        Scalar float32 tensor.
    """
    mask = occlusion_mask(flow_fw, flow_bw)
    return _masked_mean((warp(out2.float(), flow_fw) - out1.float()) ** 2, mask)


def _as_chw(frame: Tensor | np.ndarray) -> Tensor:
    """uint8 ``HxWx3`` array or float ``[3,H,W]`` tensor in [0,1] -> float32 ``[1,3,H,W]`` in [0,1]."""
    if isinstance(frame, np.ndarray):
        t = torch.from_numpy(np.require(frame, requirements=["C", "W"])).permute(2, 0, 1)
        return (to_float(t) if frame.dtype == np.uint8 else t.float()).unsqueeze(0)
    return frame.float().unsqueeze(0) if frame.dim() == 3 else frame.float()


def _as_flow(flow: Tensor | np.ndarray) -> Tensor:
    """``[H,W,2]`` numpy (OpenCV layout) or ``[2,H,W]`` tensor -> float32 ``[1,2,H,W]``."""
    if isinstance(flow, np.ndarray):
        return torch.from_numpy(np.require(flow, np.float32, ["C", "W"])).permute(2, 0, 1).unsqueeze(0)
    return flow.float().unsqueeze(0) if flow.dim() == 3 else flow.float()


def warping_error(
    frames_out: Sequence[Tensor | np.ndarray] | Tensor,
    flows_fw: Sequence[Tensor | np.ndarray] | Tensor,
    flows_bw: Sequence[Tensor | np.ndarray] | Tensor,
    cuts: Sequence[bool] | None = None,
) -> float:
    """Warping error of a clip of outputs: mean over consecutive pairs of :func:`pair_warping_error`, leaving out
    the pairs across scene cuts (flow across a cut is meaningless, and one such pair can dominate the mean).

    Args:
        frames_out: ``T`` outputs, a ``[T,3,H,W]`` tensor in [0,1] or a list of uint8 ``HxWx3`` arrays.
        flows_fw: ``T-1`` flows of the INPUT clip, ``flows_fw[t]`` maps frame t -> t+1 (``[2,H,W]`` tensors or
            ``[H,W,2]`` arrays, pixels).
        flows_bw: ``T-1`` flows of the INPUT clip, ``flows_bw[t]`` maps frame t+1 -> t.
        cuts: ``T-1`` flags, ``cuts[t]`` True when pair ``(t, t+1)`` crosses a scene cut (see
            :func:`inference.engine.flow.scene_cuts`); those pairs are left out. ``None`` keeps every pair.

    Returns:
        The clip's warping error (float, RGB in [0,1] units; lower is steadier); NaN when every pair is a cut.
    """
    n = len(frames_out)
    if n < 2 or len(flows_fw) != n - 1 or len(flows_bw) != n - 1:
        raise ValueError(f"warping_error needs T >= 2 frames and T-1 flows each way; got {n}, {len(flows_fw)}")
    if cuts is not None and len(cuts) != n - 1:
        raise ValueError(f"warping_error needs T-1 cut flags; got {len(cuts)} for {n} frames")
    errors = [
        pair_warping_error(
            _as_chw(frames_out[t]), _as_chw(frames_out[t + 1]), _as_flow(flows_fw[t]), _as_flow(flows_bw[t])
        )
        for t in range(n - 1)
        if cuts is None or not cuts[t]
    ]
    return float(torch.stack(errors).mean()) if errors else float("nan")


def clip_flows(
    frames_in: Sequence[np.ndarray], method: str = "dis", cache_dir: str | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward and backward flows between consecutive INPUT frames (uint8 ``HxWx3``), ``[H,W,2]`` float32 each."""
    from styletrain.temporal.flow import FlowCache, forward_backward

    cache = FlowCache(cache_dir) if cache_dir else None
    fws, bws = [], []
    for a, b in zip(frames_in[:-1], frames_in[1:], strict=True):
        fw, bw = forward_backward(a, b, method=method, cache=cache)
        fws.append(fw)
        bws.append(bw)
    return fws, bws


def clip_warping_error(frames_in: Sequence[np.ndarray], frames_out: Sequence[np.ndarray], method: str = "dis") -> float:
    """Warping error of ``frames_out`` using flows estimated on ``frames_in`` (uint8 ``HxWx3``, same sizes).

    ``clip_warping_error(frames_in, frames_in)`` is the input clip's own error: the floor a stable output reaches.
    """
    if len(frames_in) != len(frames_out):
        raise ValueError(f"clip_warping_error: {len(frames_in)} input frames but {len(frames_out)} outputs")
    fws, bws = clip_flows(frames_in, method=method)
    return warping_error(list(frames_out), fws, bws)
