"""The consistency stage's combination as tensor operations on any device (the stage on CUDA runs it there, next to the
network's output, with no full-resolution trip through the host).

The same recursion as :meth:`inference.engine.consistency.ConsistencyStage.combine`, step for step::

    O_t = where(w_t > 0, C(P_t + S * w_t * (warp(O_{t-1}, flow) - P_t)), P_t)

with ``warp`` the bilinear sampling of :func:`inference.engine.flow.warp` (0 outside), ``C`` the local contrast
restoration of :func:`restore_contrast_tensor` (box means with OpenCV's default reflected border, as ``cv2.blur``) and
the history kept in float32. On the CPU the OpenCV path stays (it is faster there); tests/test_consistency_device.py
checks that both agree within one grey level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inference.engine.flow import warp


def box_blur(image: Tensor, size: int) -> Tensor:
    """Mean over a ``size`` px square of ``image [B,C,H,W]``, borders reflected without repeating the edge pixel
    (OpenCV's ``BORDER_REFLECT_101``, ``cv2.blur``'s default)."""
    r = size // 2
    h, w = image.shape[-2:]
    mode = "reflect" if r < h and r < w else "replicate"  # reflect needs the frame larger than the radius
    return F.avg_pool2d(F.pad(image, (r, r, r, r), mode=mode), size, stride=1)


def restore_contrast_tensor(blended: Tensor, current: Tensor, window: int, max_gain: float) -> Tensor:
    """:func:`inference.engine.consistency.restore_contrast` on tensors: ``blended`` given back the local contrast of
    ``current`` where blending took it away.

    Args:
        blended, current: ``float32 [B,3,H,W]`` in [0, 1].
        window: Box size in pixels. max_gain: The largest gain.

    Returns:
        ``float32 [B,3,H,W]`` in [0, 1].
    """
    mean = box_blur(blended, window)
    var_blended = (box_blur(blended * blended, window) - mean * mean).clamp_(min=0.0) + 1e-5
    mean_current = box_blur(current, window)
    var_current = (box_blur(current * current, window) - mean_current * mean_current).clamp_(min=0.0) + 1e-5
    gain = (var_current / var_blended).sqrt_().clamp_(1.0, max_gain)
    return ((blended - mean) * gain + mean).clamp_(0.0, 1.0)


def to_unit(frames: Tensor) -> Tensor:
    """``uint8 [B,H,W,3]`` -> ``float32 [B,3,H,W]`` in [0, 1]."""
    return frames.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)


def to_uint8(frames: Tensor) -> Tensor:
    """``float32 [B,3,H,W]`` in [0, 1] -> ``uint8 [B,H,W,3]``, rounded to nearest (ties to even, as OpenCV)."""
    return frames.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class TensorCombiner:
    """The stage's history and combination on one device.

    Args:
        strength: ``S`` in (0, 1] (read at every frame: a live change applies to the next one).
        window, max_gain: Contrast restoration settings (the stage's ``CONTRAST_WINDOW``, ``MAX_CONTRAST_GAIN``).
    """

    def __init__(self, strength: float, window: int, max_gain: float) -> None:
        self.strength, self.window, self.max_gain = strength, window, max_gain
        self.previous: Tensor | None = None  # float32 [1,3,H,W]: the last output, unrounded

    def combine(self, outs: Tensor, motions: list) -> Tensor:
        """Frames in order: ``uint8 [B,H,W,3]`` per-frame outputs on the device and their :class:`Motion` (tensors
        on any device) -> ``float32 [B,3,H,W]`` consistent outputs. The history changes only when every frame of the
        batch went through (a batch retried after running out of memory starts from the same history)."""
        previous, results = self.previous, []
        for current, motion in zip(to_unit(outs).split(1), motions, strict=True):
            if motion.flow is None or previous is None or previous.shape != current.shape:
                result = current
            else:
                flow = motion.flow.to(current.device, non_blocking=True)
                weight = motion.weight.to(current.device, non_blocking=True)
                carried = warp(previous, flow)
                blended = (carried - current) * (weight * self.strength) + current
                restored = restore_contrast_tensor(blended, current, self.window, self.max_gain)
                # Only where something was carried: newly visible pixels stay the fresh stylization, bit for bit.
                result = torch.where(weight > 0, restored, current)
            results.append(result)
            previous = result
        self.previous = previous
        return torch.cat(results)
