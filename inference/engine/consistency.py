"""Temporal consistency at inference, for any artifact: keep each output close to the previous output moved by the
input's motion, where the pixel stayed visible.

For frame ``t`` with per-frame stylization ``P_t`` (whatever the network, blend, stroke scale, colour or strength
options made of it) the stage outputs::

    O_t = C(P_t + S * w_t * (warp(O_{t-1}, flow_t->t-1) - P_t))

- ``flow`` is estimated on the *input* frames (the only motion that can be trusted: the outputs flicker), forward
  and backward, at reduced resolution in a worker thread while the network runs: OpenCV DIS on the host
  (:data:`FLOW_SCALE`), or RAFT on the Stylizer's CUDA device where its weights are at hand
  (:mod:`inference.engine.device_flow`).
- ``w_t`` in [0, 1] is the visibility mask (forward-backward disagreement, motion boundaries, leaving the frame:
  :func:`inference.engine.flow.occlusion_mask`, eroded by :data:`OCCLUSION_MARGIN`) times a photometric check on the
  inputs (1 where the warped previous input matches the current one to within :data:`PHOTO_NOISE` of luma, falling to
  0 at :data:`PHOTO_TOLERANCE`), so newly visible regions and flow failures take the fresh stylization exactly.
  Where zero motion explains the input as well as the flow, the flow is replaced by zero (DIS invents motion in flat
  regions).
- A scene cut (input histograms, :func:`inference.engine.flow.is_cut`) resets the history: ``O_t = P_t``.
- ``C`` restores the local contrast of ``P_t`` that the blend averaged away (:func:`restore_contrast`).
- ``S`` is the user's strength: 0 is off (the stage is not even built, so the output is bit-identical to per-frame
  output), 1 keeps visible pixels fully.

The recursion is a per-pixel exponential average along motion paths: flicker that is independent from frame to frame
falls by about ``(1 - S) / (1 + S)`` in variance, while content that moves with the input is carried along. The
figures for these choices (and for what each step changed) are in bench/consistency.py's results and
``docs/consistency.md``; the DIS preset and scale were picked for cost, not swept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inference.core.colour import to_float
from inference.core.errors import OptionError
from inference.core.stages import StageClock
from inference.engine.consistency_tensor import TensorCombiner
from inference.engine.device_flow import FLOW_PRESET, FLOW_SCALE, DisFlow, FlowEstimator
from inference.engine.flow import (
    CUT_THRESHOLD,
    histogram_distance,
    histogram_signature,
    occlusion_mask,
    to_gray,
    warp,
)

log = logging.getLogger(__name__)
# FLOW_PRESET and FLOW_SCALE, the stage's DIS settings, are defined beside the estimators (device_flow), so that the
# Stylizer's flow (choose_flow) and a stage made here without one use the same.
#: Luma difference (in [0, 1], 5x5 mean) between the current input and the warped previous one up to which a pixel
#: keeps its full weight, and at which the weight reaches 0 (linear between): beyond the tolerance the flow is wrong
#: there or the light changed, so the fresh stylization is the safer choice. Under the noise floor the difference is
#: what a right flow leaves too (codec noise, fine texture resampled at sub-pixel offsets): a weight falling from a
#: difference of 0 already (as before) cut the mean weight on the zooming Big Buck Bunny clip to 0.89 although 96% of
#: its pixels were under 0.02. The tolerance stays where it was: at 0.06, single uncovered pixels of the tests' moving
#: object passed with a small weight.
PHOTO_NOISE = 0.02
PHOTO_TOLERANCE = 0.05
#: Zero motion is preferred wherever its luma mismatch is within this of the flow's (see _MotionEstimator).
STILL_MARGIN = 0.002
#: Local contrast restoration after the blend (:func:`restore_contrast`): box size in pixels and the largest gain.
CONTRAST_WINDOW = 13
MAX_CONTRAST_GAIN = 2.0
#: Visibility is eroded by this many pixels: DIS flow is smooth across motion boundaries, so the pixels next to an
#: occlusion are the likeliest to be carried wrongly (ghost fringes at the trailing edges of moving objects).
OCCLUSION_MARGIN = 3


def check_consistency(strength: float) -> float:
    """Validate the ``consistency`` strength (a float in [0, 1]) and return it as a float; the stage can be built
    without :class:`~inference.engine.options.RuntimeOptions` (live sockets, evaluation), so it checks its own input."""
    value = float(strength)
    if not 0.0 <= value <= 1.0:
        raise OptionError("consistency", f"must be in [0, 1], got {strength}")
    return value


@dataclass
class Motion:
    """What the stage needs to carry the previous output into frame ``t``.

    Attributes:
        flow: ``float32 [H,W,2]`` from frame t to frame t-1 in frame t's coordinates (pixels), or None when there
            is no usable history (first frame, scene cut, size change); for the stage on a device, ``float32
            [1,2,H,W]`` on the flow's device.
        weight: ``float32 [H,W,1]`` in [0, 1]: visibility times the photometric check (None with ``flow``); on a
            device, ``float32 [1,1,H,W]``.
        cut: Whether frame t starts a new shot.
    """

    flow: np.ndarray | Tensor | None
    weight: np.ndarray | Tensor | None
    cut: bool = False


class _MotionEstimator:
    """Estimates :class:`Motion` frame after frame; keeps the previous input's grey image and histogram.

    Called from one worker thread only, in frame order, so its state needs no lock.

    Args:
        flow: The estimator.
        tensors: Leave the flow and weight as tensors where they were computed (the stage on a device), instead of
            bringing them to the host as arrays.
    """

    def __init__(self, flow: FlowEstimator, tensors: bool = False) -> None:
        self.flow, self.tensors = flow, tensors
        self._frame: np.ndarray | None = None
        self._gray: np.ndarray | None = None
        self._hist: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> Motion:
        gray, hist = to_gray(frame), histogram_signature(frame)
        prev_frame, prev_gray, prev_hist = self._frame, self._gray, self._hist
        self._frame, self._gray, self._hist = frame, gray, hist
        if prev_gray is None:
            return Motion(None, None)
        if prev_gray.shape != gray.shape or histogram_distance(hist, prev_hist) > CUT_THRESHOLD:
            return Motion(None, None, cut=True)
        # t -> t-1, t-1 -> t: [1,2,H,W] on the flow's device (RAFT's GPU: the masks are computed there too).
        back, ahead = self.flow.pair(prev_frame, frame, prev_gray, gray)
        visible = _erode(occlusion_mask(back, ahead), OCCLUSION_MARGIN)
        luma = to_float(torch.from_numpy(np.stack([gray, prev_gray])).to(back.device)).unsqueeze(1)
        # Mean over a neighbourhood: a wrong flow over smooth texture can match single pixels by chance, not areas.
        mismatch = _box_mean((luma[:1] - warp(luma[1:], back)).abs_(), 5)
        still = _box_mean((luma[:1] - luma[1:]).abs_(), 5)
        # Where standing still explains the input as well as the flow does, stand still. DIS invents large motions in
        # flat or hazy regions (any flow matches there); carrying the output's texture along them smears it, while a
        # network's output over an unchanged input region is itself unchanged.
        use_still = still <= mismatch + STILL_MARGIN
        mismatch = torch.where(use_still, still, mismatch)
        visible = torch.where(use_still, torch.ones_like(visible), visible)
        back = torch.where(use_still, 0.0, back)
        weight = visible * ((PHOTO_TOLERANCE - mismatch) / (PHOTO_TOLERANCE - PHOTO_NOISE)).clamp_(0.0, 1.0)
        if self.tensors:
            return Motion(back, weight)
        return Motion(back[0].permute(1, 2, 0).cpu().numpy(), weight[0].permute(1, 2, 0).cpu().numpy())


def _erode(mask: Tensor, margin: int) -> Tensor:
    """``mask [1,1,H,W]`` in {0, 1} eroded by ``margin`` px (a square window; outside the frame does not count). On
    the CPU with OpenCV's erosion: torch's max-pool took 8 ms of the stage's 34 ms per 640x360 frame."""
    if mask.device.type != "cpu":
        return -F.max_pool2d(-mask, 2 * margin + 1, 1, margin)
    import cv2

    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return torch.from_numpy(cv2.erode(mask[0, 0].numpy(), kernel))[None, None]


def _box_mean(image: Tensor, size: int) -> Tensor:
    """``image [1,1,H,W]`` averaged over a ``size`` px square, over the pixels inside the frame only (as
    ``avg_pool2d(count_include_pad=False)``); on the CPU with OpenCV's box filter, about 10x faster than torch's."""
    if image.device.type != "cpu":
        return F.avg_pool2d(image, size, 1, size // 2, count_include_pad=False)
    import cv2

    plane, k = image[0, 0].numpy(), (size, size)
    total = cv2.blur(plane, k, borderType=cv2.BORDER_CONSTANT)
    inside = cv2.blur(np.ones_like(plane), k, borderType=cv2.BORDER_CONSTANT)
    return torch.from_numpy(total / inside)[None, None]


def carry(previous: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``previous`` (float32 ``[H,W,3]``) sampled at ``x + flow(x)`` (bilinear, 0 outside), as
    :func:`inference.engine.flow.warp` does, with OpenCV's remap (single pass, no thread-pool overhead)."""
    import cv2

    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    return cv2.remap(previous, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def restore_contrast(blended: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Give ``blended`` back the local contrast of ``current`` where blending took it away.

    Averaging the fresh stylization with the carried history lowers the variance of whatever differs between them
    (flicker, and texture that the bilinear warp softens a little at every frame); along a recursion that compounds
    into a flat, blurred painting. Here each channel's deviation from its local mean (a :data:`CONTRAST_WINDOW`-pixel
    box) is scaled by ``std(current) / std(blended)`` over the same box, only upwards and at most
    :data:`MAX_CONTRAST_GAIN` times (variance-preserving blending, as in Heitz and Neyret 2018). Where nothing was
    blended the two deviations are equal and the gain is 1; since the gain is a smooth, local statistic of the
    per-frame output, it restores contrast without bringing back the frame-to-frame flicker itself.

    Args:
        blended, current: ``float32 [H,W,3]`` in [0, 1].

    Returns:
        ``float32 [H,W,3]`` in [0, 1].
    """
    import cv2

    # In place where possible: at 640x360 each full-frame numpy pass costs about 1.7 ms on a small CPU.
    k = (CONTRAST_WINDOW, CONTRAST_WINDOW)

    def local_variance(image: np.ndarray, mean: np.ndarray) -> np.ndarray:
        var = cv2.blur(image * image, k)
        var -= mean * mean
        return np.maximum(var, 0.0, out=var)

    mean = cv2.blur(blended, k)
    var_blended = local_variance(blended, mean)
    var_current = local_variance(current, cv2.blur(current, k))
    var_current += 1e-5
    var_blended += 1e-5
    gain = np.sqrt(np.divide(var_current, var_blended, out=var_current), out=var_current)
    np.clip(gain, 1.0, MAX_CONTRAST_GAIN, out=gain)
    result = blended - mean
    result *= gain
    result += mean
    return np.clip(result, 0.0, 1.0, out=result)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """``float32 [H,W,3]`` in [0, 1] -> ``uint8``, rounded to nearest and saturated, in one OpenCV pass."""
    import cv2

    return cv2.convertScaleAbs(image, alpha=255.0)


class ConsistencyStage:
    """The consistency stage around a frame stylizer (see the module docstring for the formula).

    By default the combination runs on the host (the flow runs where its estimator does): its inputs (the uint8 input
    and output frames) are there already, and OpenCV's single-pass remap and box filters cost a few milliseconds per
    640x360 frame. With ``tensors`` the motion stays where the flow computed it and :meth:`combine_batch` combines
    device tensors (:mod:`inference.engine.consistency_tensor`; the Stylizer does this on CUDA, see
    :mod:`inference.engine.device_stage`).

    The stage works on the network's output *before* the user's strength mixes in the original frame
    (:meth:`run`'s ``mix``): a frame with nothing of the network's in it (strength 0) is never moved.

    Args:
        strength: ``S`` in (0, 1].
        clock: Receives ``flow`` (worker thread) and ``consistency`` (combination) busy time; None = not timed.
        preset, scale: DIS preset and estimation scale (defaults: :data:`FLOW_PRESET`, :data:`FLOW_SCALE`).
        flow: The flow estimator (:mod:`inference.engine.device_flow`: RAFT on a device, or DIS); None = DIS with
            ``preset`` and ``scale``. Its ``label`` goes into ``clock``'s notes (``--stats`` names the flow that ran).

    Attributes:
        cuts: Scene cuts seen so far (each one reset the history).
    """

    def __init__(
        self,
        strength: float,
        *,
        clock: StageClock | None = None,
        preset: str = FLOW_PRESET,
        scale: float = FLOW_SCALE,
        flow: FlowEstimator | None = None,
        tensors: bool = False,
    ) -> None:
        self._strength = check_consistency(strength)
        self.clock = clock
        self.cuts = 0
        self._estimate = _MotionEstimator(flow if flow is not None else DisFlow(preset, scale), tensors)
        self._previous: np.ndarray | None = None
        self._tensors = TensorCombiner(self.strength, CONTRAST_WINDOW, MAX_CONTRAST_GAIN) if tensors else None

    @property
    def strength(self) -> float:
        """``S`` in [0, 1]; settable between frames (a live control), checked like the option."""
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._strength = check_consistency(value)

    def step(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """One frame of a stream that arrives a frame at a time (a webcam): ``uint8 [H,W,3]`` RGB input and its
        per-frame stylization (same shape, before the user's strength) -> the consistent ``uint8 [H,W,3]`` output.
        :meth:`run` is the same recursion for sequences, with the flow overlapping the network."""
        self.flow.show(frame)
        return self.combine(out, self.estimate(frame))

    @property
    def flow(self) -> FlowEstimator:
        """The flow estimator the stage announces frames to and asks pairs of."""
        return self._estimate.flow

    def run(
        self,
        items: Iterable[tuple[np.ndarray, Any]],
        stylize: Callable[[Iterator[tuple[np.ndarray, Any]]], Iterator[tuple[np.ndarray, Any]]],
        mix: Callable[[], float] | None = None,
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Stylize ``(frame, meta)`` pairs with ``stylize`` and make the results consistent, in order.

        Args:
            items: ``uint8 [H,W,3]`` RGB input frames with any metadata.
            stylize: The per-frame stylizer (e.g. ``Stylizer.process``): ``(frame, meta)`` in, ``(uint8 [H,W,3],
                meta)`` out, in order; it may read ahead (batches).
            mix: The user's strength, read at each frame: the consistent output is mixed with the input frame by it
                (:func:`mix_frames`) after the stage, so strength 0 gives the input exactly. None: ``stylize``'s
                output is taken as it is (it mixed already).

        Yields:
            ``(uint8 [H,W,3] RGB, meta)``, one per input frame.
        """
        # One worker: motion must be estimated in frame order, and it overlaps the network (cv2 and torch release
        # the GIL while they work).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow") as pool:

            def submitted() -> Iterator[tuple[np.ndarray, tuple[Any, Future, np.ndarray]]]:
                for frame, meta in items:
                    self._estimate.flow.show(frame)  # RAFT batches the pairs of frames read ahead of the flow
                    yield frame, (meta, pool.submit(self.estimate, frame), frame)

            for out, (meta, job, frame) in stylize(submitted()):
                result = self.combine(out, job.result())
                yield (result if mix is None else mix_frames(result, frame, mix())), meta

    def estimate(self, frame: np.ndarray) -> Motion:
        """The next input frame's :class:`Motion` (``uint8 [H,W,3]`` RGB, called in frame order), for
        :meth:`combine`; :meth:`run` calls it from its flow thread."""
        t0 = time.perf_counter()
        try:
            return self._estimate(frame)
        finally:
            if self.clock is not None:
                self.clock.add("flow", time.perf_counter() - t0)
                self.clock.notes["flow"] = self._estimate.flow.label  # after the pair: a fallback changes it

    def combine(self, out: np.ndarray, motion: Motion) -> np.ndarray:
        """One frame of the recursion: ``uint8 [H,W,3]`` per-frame output and its :class:`Motion` -> consistent
        ``uint8 [H,W,3]``. The history is kept in float so that rounding does not accumulate."""
        t0 = time.perf_counter()
        current = np.multiply(out, np.float32(1.0 / 255.0), dtype=np.float32)
        self.cuts += int(motion.cut)
        previous = self._previous
        if motion.flow is None or previous is None or previous.shape != current.shape:
            result = current
        else:
            carried = carry(previous, motion.flow)
            blended = carried
            blended -= current
            blended *= motion.weight * np.float32(self.strength)
            blended += current
            # Only where something was carried: newly visible pixels stay the fresh stylization, bit for bit.
            result = np.where(motion.weight > 0, restore_contrast(blended, current), current)
        self._previous = result
        frame = _to_uint8(result)
        if self.clock is not None:
            self.clock.add("consistency", time.perf_counter() - t0)
        return frame

    def combine_batch(self, outs: Tensor, motions: list[Motion]) -> Tensor:
        """:meth:`combine` for a batch on a device (a stage made with ``tensors``): ``uint8 [B,H,W,3]`` per-frame
        outputs and their motions, in frame order -> ``float32 [B,3,H,W]`` in [0, 1] on the same device."""
        if self._tensors is None:
            raise RuntimeError("combine_batch needs a stage made with tensors=True")
        self._tensors.strength = self.strength
        self.cuts += sum(int(m.cut) for m in motions)
        return self._tensors.combine(outs, motions)


def mix_frames(styled: np.ndarray, original: np.ndarray, strength: float) -> np.ndarray:
    """``uint8 [H,W,3]`` ``styled`` mixed with ``original`` by ``strength`` (1 keeps ``styled``, 0 gives ``original``
    exactly), rounded to nearest: the user's strength applied after the consistency stage."""
    if strength >= 1.0:
        return styled
    if strength <= 0.0:
        return original.copy()
    mixed = styled.astype(np.float32)
    mixed -= original
    mixed *= np.float32(strength)
    mixed += original
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
