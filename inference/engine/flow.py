"""Optical flow on the host (OpenCV DIS and Farnebäck), warping, occlusion masks and scene cuts: shared by the runtime
and training.

Flow convention (the same everywhere, and the MPI-Sintel ``.flo`` one): ``flow [B,2,H,W]`` in pixels, channel 0 = x
(u), channel 1 = y (v), maps frame1 to frame2 in frame1's coordinates, so that ``frame1(x) ≈ frame2(x + flow(x))``.
A visibility ``mask [B,1,H,W]`` is 1 where the frame1 pixel is visible in both frames.

The consistency stage (:mod:`inference.engine.consistency`) estimates flow with OpenCV DIS on the *input* frames at
reduced resolution; training (``styletrain.temporal``) imports :func:`warp` and :func:`occlusion_mask` from here, so the
stage and the training loss share one implementation, and its flow estimators by name (``styletrain.temporal.flow``)
are the ones here and RAFT's (:mod:`inference.engine.device_flow`). OpenCV is imported lazily, inside the functions
that need it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# DIS presets by name (OpenCV's constants, resolved lazily so importing this module does not import cv2).
DIS_PRESETS = ("ultrafast", "fast", "medium")
# A scene cut: the mean over R, G, B of the earth mover's distance between 32-bin histograms of two frames at 64 px
# wide (:func:`histogram_distance`, in units of the full intensity range) exceeds this. It counts how far the mass
# moved, not only how much: the total-variation distance used before jumped to 0.7 when a nearly uniform frame (fog)
# brightened by a few levels, since all its mass sat in one or two bins, and called 5 of 15 pairs of a 2 s Sintel
# excerpt cuts (a fade into fog and a figure emerging from it, no cut at all). Within the shared clips the distance
# between consecutive frames stays at or under 0.05 (that fade's steepest pair; pans and zooms 0.001-0.01), while
# frames from two different clips are 0.16-0.33 apart. A missed cut costs little more than a false one: the flow
# across it fails the visibility and photometric checks, so those pixels take the fresh stylization anyway.
CUT_THRESHOLD = 0.08
_HIST_WIDTH = 64


def _base_grid(flow: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates ``(xs [1,H,W], ys [1,H,W])`` matching ``flow``'s size, device and dtype."""
    _, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1).expand(1, h, w)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w).expand(1, h, w)
    return xs, ys


def warp(image: Tensor, flow: Tensor, padding_mode: str = "zeros", mode: str = "bilinear") -> Tensor:
    """Sample ``image`` at ``x + flow(x)``, so ``warp(frame2, flow) ≈ frame1`` where the mask is 1.

    Args:
        image: ``[B,C,H,W]`` any float dtype.
        flow: ``[B,2,H,W]`` pixels (u, v), frame1 -> frame2 in frame1's coordinates.
        padding_mode: ``grid_sample`` padding for samples outside the image (``"zeros"`` by default).
        mode: ``grid_sample`` interpolation (``"bilinear"`` or ``"bicubic"``).

    Returns:
        ``[B,C,H,W]`` in ``image``'s dtype; pixels whose source lies outside ``image`` are 0 (``"zeros"``).
    """
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:] or flow.shape[1] != 2:
        raise ValueError(f"warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} do not match")
    _, _, h, w = flow.shape
    flow = flow.float()
    xs, ys = _base_grid(flow)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels, so pixel x maps to 2x/(W-1)-1.
    gx = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(image.float(), grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    return out.to(image.dtype)


def inside_mask(flow: Tensor, border: float = 0.0) -> Tensor:
    """``[B,1,H,W]`` float mask: 1 where ``x + flow(x)`` lands inside the frame, ``border`` px away from its edges."""
    _, _, h, w = flow.shape
    xs, ys = _base_grid(flow.float())
    tx, ty = xs + flow[:, 0].float(), ys + flow[:, 1].float()
    inside = (tx >= border) & (tx <= w - 1 - border) & (ty >= border) & (ty <= h - 1 - border)
    return inside.unsqueeze(1).float()


def occlusion_mask(flow_fw: Tensor, flow_bw: Tensor) -> Tensor:
    """Visibility mask from forward-backward consistency and motion boundaries (Lai et al. 2018).

    A frame1 pixel ``x`` is occluded when ``|F + B~|^2 > 0.01 (|F|^2 + |B~|^2) + 0.5`` with ``B~ = B(x + F(x))``
    (the backward flow sampled where the forward flow lands), or when it lies on a motion boundary,
    ``|grad F|^2 > 0.01 |F|^2 + 0.002``, or when ``x + F(x)`` leaves the frame.

    Args:
        flow_fw: ``[B,2,H,W]`` frame1 -> frame2 in frame1's coordinates (pixels).
        flow_bw: ``[B,2,H,W]`` frame2 -> frame1 in frame2's coordinates (pixels).

    Returns:
        ``[B,1,H,W]`` float32 in {0, 1}; 1 = visible in both frames.
    """
    fw, bw = flow_fw.float(), flow_bw.float()
    bw_at_fw = warp(bw, fw)
    sq = lambda t: (t**2).sum(1, keepdim=True)  # noqa: E731 - squared magnitude over (u, v)
    inconsistent = sq(fw + bw_at_fw) > 0.01 * (sq(fw) + sq(bw_at_fw)) + 0.5
    # Forward differences as in Lai et al.'s reference code; the last row/column repeats (zero gradient).
    # A frame one pixel wide (or high) has no difference to repeat: its gradient is zero.
    h, w = fw.shape[-2:]
    dx = F.pad(fw[..., :, 1:] - fw[..., :, :-1], (0, 1, 0, 0), mode="replicate") if w > 1 else torch.zeros_like(fw)
    dy = F.pad(fw[..., 1:, :] - fw[..., :-1, :], (0, 0, 0, 1), mode="replicate") if h > 1 else torch.zeros_like(fw)
    boundary = sq(dx) + sq(dy) > 0.01 * sq(fw) + 0.002
    visible = (~inconsistent) & (~boundary)
    return visible.float() * inside_mask(fw)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """``uint8 [H,W,3]`` RGB (or ``[H,W]`` grey) -> ``uint8 [H,W]`` grey (OpenCV's BT.601 weights)."""
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def dis_flow(gray_a: np.ndarray, gray_b: np.ndarray, preset: str = "medium", scale: float = 1.0) -> np.ndarray:
    """OpenCV DIS flow from ``gray_a`` to ``gray_b``, estimated at ``scale`` times the size and brought back.

    Args:
        gray_a, gray_b: ``uint8 [H,W]`` grey frames of the same size.
        preset: One of :data:`DIS_PRESETS` (finer presets cost more).
        scale: Estimation resolution relative to the frames, in (0, 1]: 0.5 costs about a quarter of full size.

    Returns:
        ``float32 [H,W,2]`` in pixels of the full-size frames, with ``a(x) ≈ b(x + flow(x))``.
    """
    import cv2

    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; use one of {', '.join(DIS_PRESETS)}")
    h, w = gray_a.shape[:2]
    # DIS refuses images with both sides under 12 pixels (cv2.error): tiny frames are estimated enlarged.
    small = (max(16, round(w * scale)), max(16, round(h * scale)))
    if small != (w, h):
        gray_a = cv2.resize(gray_a, small, interpolation=cv2.INTER_AREA)
        gray_b = cv2.resize(gray_b, small, interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    flow = dis.calc(gray_a, gray_b, None)
    if small != (w, h):
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= w / small[0]
        flow[..., 1] *= h / small[1]
    return flow.astype(np.float32, copy=False)


def farneback_flow(gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
    """OpenCV Farnebäck (polynomial expansion) flow from ``gray_a`` to ``gray_b`` at full size: a ruler of another
    family than the DIS the consistency stage uses, so that the stage is not judged by its own flow.

    Args:
        gray_a, gray_b: ``uint8 [H,W]`` grey frames of the same size.

    Returns:
        ``float32 [H,W,2]`` in pixels, with ``a(x) ≈ b(x + flow(x))``.
    """
    import cv2

    # A 5-level pyramid halving each time and 15 px windows follow motions of tens of pixels; poly_n 7 with sigma 1.5
    # is OpenCV's recommended pair for smoother flow.
    flow = cv2.calcOpticalFlowFarneback(
        gray_a, gray_b, None, pyr_scale=0.5, levels=5, winsize=15, iterations=5, poly_n=7, poly_sigma=1.5, flags=0
    )
    return flow.astype(np.float32, copy=False)


def flow_tensor(flow: np.ndarray) -> Tensor:
    """``float32 [H,W,2]`` (OpenCV layout) -> ``float32 [1,2,H,W]``."""
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def histogram_signature(frame: np.ndarray) -> np.ndarray:
    """Normalised 32-bin R, G, B histograms of ``frame`` (``uint8 [H,W,3]``) shrunk to 64 px wide: ``[3,32]``."""
    import cv2

    h, w = frame.shape[:2]
    small = cv2.resize(frame, (_HIST_WIDTH, max(1, round(h * _HIST_WIDTH / w))), interpolation=cv2.INTER_AREA)
    small = small.reshape(-1, small.shape[-1] if small.ndim == 3 else 1)
    hists = [np.bincount(small[:, c] >> 3, minlength=32) for c in range(small.shape[1])]
    return np.stack(hists).astype(np.float64) / small.shape[0]


def histogram_distance(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """Mean over the channels of the earth mover's (1-D Wasserstein) distance between two
    :func:`histogram_signature` results (``[C,32]`` each), in units of the full intensity range: in [0, 1], 0 for
    equal histograms, about ``d`` when every pixel brightened by ``d`` (in [0, 1] units)."""
    cdf_gap = np.abs(np.cumsum(hist_a - hist_b, axis=1))
    return float(cdf_gap.sum(axis=1).mean() / hist_a.shape[1])


def is_cut(frame_a: np.ndarray, frame_b: np.ndarray) -> bool:
    """Whether ``frame_b`` starts a new shot after ``frame_a`` (uint8 RGB): different sizes, or histograms apart by
    more than :data:`CUT_THRESHOLD` (:func:`histogram_distance`)."""
    if frame_a.shape != frame_b.shape:
        return True
    return histogram_distance(histogram_signature(frame_a), histogram_signature(frame_b)) > CUT_THRESHOLD


def scene_cuts(frames: list[np.ndarray]) -> list[bool]:
    """``cuts[t]`` is True when the pair ``(frames[t], frames[t + 1])`` crosses a scene cut (``len(frames) - 1``)."""
    return [is_cut(a, b) for a, b in zip(frames[:-1], frames[1:], strict=False)]
