"""Optical flow for the consistency stage (OpenCV DIS on the host, or torchvision RAFT on the stage's CUDA device), and
the project's one home of RAFT: every RAFT model, in the runtime and in training, is built and loaded here.

Both estimators give the stage the same thing: for the pair (previous input, current input) the backward flow
(current -> previous) and the forward flow (previous -> current), each ``float32 [1,2,H,W]`` in the convention of
:mod:`inference.engine.flow` (pixels, channel 0 = x), on the device the estimator ran on (the stage computes its masks
there and brings only the result to the host).

:func:`choose_flow` picks one for a Stylizer: RAFT when the device is CUDA and RAFT weights are at hand (an explicit
file, or torchvision's own weights already in the torch hub cache: nothing is downloaded during a conversion), DIS
otherwise. Whenever the Stylizer is on a GPU and DIS is chosen, or RAFT fails while running, one log line says why.
torchvision is imported only when RAFT is built, so loading an artifact or running DIS never imports it.

Training's flow (``styletrain.temporal.flow``) asks for RAFT here too: :func:`pretrained_raft` (weights downloaded once,
a one-line error offline) gives a full-size :class:`RaftFlow`, and :meth:`RaftFlow.estimate` runs one pair on the
host's terms. So one rule sizes every RAFT input (:func:`raft_size`) and one function builds every model
(:func:`build_raft`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inference.core.errors import OptionError, UserError
from inference.engine.flow import dis_flow, flow_tensor

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

log = logging.getLogger(__name__)

#: torchvision's RAFT variants in the order a state dict is tried against them (the small one has fewer keys).
RAFT_VARIANTS = ("raft_small", "raft_large")
#: DIS preset and estimation scale for the consistency stage: medium at half size costs about what fast costs at full
#: size and smooths more; picked for cost, not swept.
FLOW_PRESET = "medium"
FLOW_SCALE = 0.5
#: RAFT estimates at this fraction of the frame's size (as DIS does in the stage): half size keeps 1080p under a
#: million pixels per frame, and the stage's masks work at full size from the flow brought back up.
RAFT_SCALE = 0.5
#: The smallest side RAFT is run at: torchvision's correlation pyramid needs feature maps (1/8 of the input) of at
#: least 16 cells; smaller frames are estimated enlarged.
RAFT_MIN_SIDE = 128
#: RAFT's recurrent refinement steps (torchvision's default).
RAFT_UPDATES = 12
#: At most this many frame pairs go through RAFT in one batch (twice as many images: forward and backward).
RAFT_MAX_PAIRS = 4
#: Announced frames (:meth:`RaftFlow.show`) kept at most; the oldest are forgotten (they then batch no more).
SHOWN_LIMIT = 32


class FlowEstimator(Protocol):
    """What the consistency stage asks of a flow: each frame announced as it arrives (:meth:`show`, in frame order),
    then one pair of frames at a time, in frame order, from the stage's worker thread (:meth:`pair`)."""

    label: str  # what runs where, for the log and ``--stats`` ("OpenCV DIS (medium, x0.5) on the CPU")

    def pair(
        self, prev: np.ndarray, frame: np.ndarray, prev_gray: np.ndarray, gray: np.ndarray
    ) -> tuple[Tensor, Tensor]:
        """``(backward frame -> prev, forward prev -> frame)``, each ``float32 [1,2,H,W]`` on the estimator's device
        (the CPU for DIS), ready for the caller's current stream, from ``uint8 [H,W,3]`` RGB frames and their ``uint8
        [H,W]`` grey versions."""
        ...

    def show(self, frame: np.ndarray) -> None:
        """Announce ``frame`` (``uint8 [H,W,3]``), which a later :meth:`pair` will name; an estimator may batch the
        pairs of announced frames."""
        ...


class DisFlow:
    """OpenCV DIS on grey frames, on the host (the stage's flow without a GPU).

    Args:
        preset: One of :data:`inference.engine.flow.DIS_PRESETS`.
        scale: Estimation size relative to the frames, in (0, 1].
    """

    name = "OpenCV DIS"

    def __init__(self, preset: str = FLOW_PRESET, scale: float = FLOW_SCALE) -> None:
        self.preset, self.scale = preset, scale
        self.label = f"OpenCV DIS ({preset}, x{scale:g}) on the CPU"

    def pair(
        self, prev: np.ndarray, frame: np.ndarray, prev_gray: np.ndarray, gray: np.ndarray
    ) -> tuple[Tensor, Tensor]:
        """``(backward frame -> prev, forward prev -> frame)``, each ``float32 [1,2,H,W]`` on the CPU.

        Args:
            prev, frame: ``uint8 [H,W,3]`` RGB (unused here; RAFT reads colour).
            prev_gray, gray: ``uint8 [H,W]`` grey versions of the same frames.
        """
        back = flow_tensor(dis_flow(gray, prev_gray, self.preset, self.scale))
        ahead = flow_tensor(dis_flow(prev_gray, gray, self.preset, self.scale))
        return back, ahead

    def show(self, frame: np.ndarray) -> None:
        """DIS works one pair at a time: nothing to prepare."""


def raft_size(height: int, width: int, scale: float = RAFT_SCALE) -> tuple[int, int]:
    """The ``(height, width)`` RAFT runs at for a frame: ``scale`` times the size, rounded to multiples of 8 (RAFT's
    feature stride), at least :data:`RAFT_MIN_SIDE` each. The one sizing rule for every RAFT input: frames are
    resized to it (not padded) and the flow is brought back (:meth:`RaftFlow.flows`)."""

    def side(n: int) -> int:
        return max(RAFT_MIN_SIDE, 8 * round(n * scale / 8))

    return side(height), side(width)


def raft_input(frame: np.ndarray, device: str | torch.device) -> Tensor:
    """``uint8 [H,W,3]`` RGB (or ``[H,W]`` grey, repeated to three channels) -> ``float32 [1,3,H,W]`` in [-1, 1] on
    ``device``: RAFT's input range."""
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    x = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    return x.permute(2, 0, 1).unsqueeze(0).float().mul_(2.0 / 255.0).sub_(1.0)


class RaftFlow:
    """torchvision RAFT on a device, in batches of frame pairs, forward and backward in one pass.

    When :meth:`pair` is asked for ``(prev, frame)`` and frames after ``frame`` have been announced already
    (:meth:`show`: the stage announces each frame as the network reads it, ahead of the flow), the pairs up to
    :attr:`max_pairs` frames ahead are estimated in the same batch and kept for the next calls. So the batches grow
    only when the flow falls behind the reading, where a wider batch pays, and stay one pair when it keeps up.

    Args:
        model: A torchvision ``RAFT`` (``raft_small`` or ``raft_large``), any weights; moved to ``device``.
        device: Where RAFT runs (CUDA in the stage; any device in tests).
        scale: Estimation size relative to the frames (see :func:`raft_size`).
        name: How the weights are named in the log and ``--stats``.
        updates: RAFT's refinement steps (fewer: faster, coarser).
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device,
        scale: float = RAFT_SCALE,
        name: str = "RAFT",
        updates: int = RAFT_UPDATES,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.scale, self.updates = scale, updates
        self.name = name
        self.label = f"{name} on {self.device}"
        self.max_pairs = RAFT_MAX_PAIRS  # lowered to 1 for good if a batch of several pairs runs out of memory
        # Its own stream on CUDA: the flow runs in the stage's worker thread beside the network's kernels.
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._last: tuple[np.ndarray, Tensor] | None = None  # the latest uploaded frame, reused by the next pair
        self._shown: deque[np.ndarray] = deque(maxlen=SHOWN_LIMIT)  # announced frames, in order
        self._lock = threading.Lock()  # show() runs in the reading thread, pair() in the stage's worker
        self._ready: dict[int, tuple[np.ndarray, np.ndarray, Tensor, Tensor]] = {}  # id(frame) -> prev, frame, flows

    def _upload(self, frame: np.ndarray, reuse: bool = False) -> Tensor:
        """``uint8 [H,W,3]`` host RGB -> ``float32 [1,3,H,W]`` in [-1, 1] on the device (RAFT's input range).

        With ``reuse``, the tensor of the latest upload is returned when it came from this same array: a pair's
        earlier frame is the previous pair's later one, so each frame crosses the bus once. A pair's later frame is
        always uploaded, in case the caller refills one array frame after frame."""
        if reuse and self._last is not None and self._last[0] is frame:
            return self._last[1]
        x = raft_input(frame, self.device)
        self._last = (frame, x)
        return x

    def estimate(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        """Flow from ``frame_a`` to ``frame_b``, one pair on the host's terms (training's data and metrics), leaving
        the stage's state (announced frames, ready pairs, the last upload) alone.

        Args:
            frame_a, frame_b: ``uint8 [H,W,3]`` RGB (or ``[H,W]`` grey) of the same size.

        Returns:
            ``float32 [H,W,2]`` on the host, pixels, ``frame_a(x) ≈ frame_b(x + flow(x))`` (OpenCV layout, as
            :func:`inference.engine.flow.dis_flow`).
        """
        flow = self.flows(raft_input(frame_a, self.device), raft_input(frame_b, self.device))
        return flow[0].permute(1, 2, 0).cpu().numpy()

    def flows(self, first: Tensor, second: Tensor) -> Tensor:
        """Flow from each image of ``first`` to the same-index image of ``second``, in one batch.

        Args:
            first, second: ``float32 [B,3,H,W]`` RGB in [-1, 1] on the device, any size.

        Returns:
            ``float32 [B,2,H,W]`` on the device, pixels of the given size, ``first(x) ≈ second(x + flow(x))``.
        """
        h, w = first.shape[-2:]
        rh, rw = raft_size(h, w, self.scale)
        if (rh, rw) != (h, w):
            # antialias: downsizing without it aliases fine texture into false matches.
            first, second = (F.interpolate(t, (rh, rw), mode="bilinear", antialias=True) for t in (first, second))
        with torch.inference_mode():
            flow = self.model(first, second, num_flow_updates=self.updates)[-1]
        if (rh, rw) != (h, w):
            flow = F.interpolate(flow, (h, w), mode="bilinear", align_corners=False)
            # Scaled channel by channel with Python numbers: a small tensor made on the device would be a pageable
            # host copy, which synchronises the host with the GPU once per batch.
            flow[:, 0].mul_(w / rw)
            flow[:, 1].mul_(h / rh)
        return flow.float()

    def pairs(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Forward and backward flow of every consecutive pair of ``frames`` (``float32 [N,3,H,W]`` in [-1, 1]), in one
        batch of ``2 (N - 1)``: ``(forward [N-1,2,H,W] t -> t+1, backward [N-1,2,H,W] t+1 -> t)`` on the device."""
        a, b = frames[:-1], frames[1:]
        both = self.flows(torch.cat((a, b)), torch.cat((b, a)))
        return both[: len(a)], both[len(a) :]

    def show(self, frame: np.ndarray) -> None:
        """Announce ``frame`` (see the class docstring); thread-safe."""
        with self._lock:
            self._shown.append(frame)

    def _ahead_of(self, frame: np.ndarray) -> list[np.ndarray]:
        """The announced frames right after ``frame`` (its size, at most ``max_pairs - 1``); ``frame`` and the frames
        before it are forgotten. Empty when ``frame`` was not announced (its successors are unknown)."""
        with self._lock:
            at = next((i for i, shown in enumerate(self._shown) if shown is frame), None)
            if at is None:
                return []
            for _ in range(at + 1):
                self._shown.popleft()
            later = []
            for shown in self._shown:
                if len(later) >= self.max_pairs - 1 or shown.shape != frame.shape:
                    break
                later.append(shown)
            return later

    def _estimate(self, frames: list[np.ndarray]) -> None:
        """Every consecutive pair of ``frames`` in one batch, into the ready pairs (on the device, written on this
        estimator's stream), replacing the old ones."""
        stream = torch.cuda.stream(self._stream) if self._stream is not None else nullcontext()
        with stream:
            images = torch.cat([self._upload(frames[0], reuse=True), *(self._upload(f) for f in frames[1:])])
            ahead, back = self.pairs(images)
        pairs = zip(frames[:-1], frames[1:], strict=True)
        self._ready = {id(b): (a, b, back[i : i + 1], ahead[i : i + 1]) for i, (a, b) in enumerate(pairs)}

    def pair(
        self, prev: np.ndarray, frame: np.ndarray, prev_gray: np.ndarray, gray: np.ndarray
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`DisFlow.pair`: ``(backward frame -> prev, forward prev -> frame)``, ``float32 [1,2,H,W]`` on the
        device, ready for the caller's current stream; from a batch estimated earlier when it holds this pair, else
        from a new batch (see the class docstring)."""
        ready = self._ready.get(id(frame))
        if ready is None or ready[0] is not prev or ready[1] is not frame:
            frames = [prev, frame, *self._ahead_of(frame)]
            try:
                self._estimate(frames)
            except torch.cuda.OutOfMemoryError:
                if len(frames) == 2:
                    raise
                self.max_pairs = 1  # this device cannot hold several pairs at this size: one pair at a time
                self._estimate(frames[:2])
            ready = self._ready[id(frame)]
        back, ahead = ready[2], ready[3]
        if self._stream is not None:
            consumer = torch.cuda.current_stream(self.device)
            consumer.wait_stream(self._stream)  # the caller's kernels read the flows after RAFT has written them
            for flow in (back, ahead):
                flow.record_stream(consumer)  # and their memory is not handed out again before those kernels ran
        return back, ahead


class FallbackFlow:
    """RAFT until it fails, then DIS for the rest of the run, with one warning naming the failure.

    A failure on one pair (CUDA out of memory, a driver error) must not end a conversion that DIS can finish.
    """

    def __init__(self, primary: RaftFlow, fallback: DisFlow) -> None:
        self.primary, self.fallback = primary, fallback
        self.failed: str | None = None

    @property
    def label(self) -> str:
        if self.failed is None:
            return self.primary.label
        return f"{self.fallback.label} (RAFT failed: {self.failed})"

    def show(self, frame: np.ndarray) -> None:
        if self.failed is None:
            self.primary.show(frame)

    def pair(
        self, prev: np.ndarray, frame: np.ndarray, prev_gray: np.ndarray, gray: np.ndarray
    ) -> tuple[Tensor, Tensor]:
        if self.failed is None:
            try:
                return self.primary.pair(prev, frame, prev_gray, gray)
            except Exception as exc:  # noqa: BLE001 - out of memory, a driver error, a shape RAFT refuses: DIS goes on
                self.failed = _first_line(exc)
                log.warning("consistency: RAFT failed (%s); optical flow continues with %s", self.failed,
                            self.fallback.label)  # fmt: skip
        return self.fallback.pair(prev, frame, prev_gray, gray)


def flow_for_stream(estimator: DisFlow | FallbackFlow) -> DisFlow | FallbackFlow:
    """An estimator for another stream of frames (a webcam connection beside a file's run) with the same weights on
    the same device: RAFT keeps per-stream state (announced frames, ready pairs, the last upload), so each stream gets
    its own around the shared model; DIS keeps none and is shared. One that has fallen back to DIS gives DIS."""
    if isinstance(estimator, FallbackFlow):
        if estimator.failed is not None:
            return estimator.fallback
        raft = estimator.primary
        return FallbackFlow(RaftFlow(raft.model, raft.device, raft.scale, raft.name, raft.updates), estimator.fallback)
    return estimator


def hub_weights_file(variant: str = "raft_small") -> Path:
    """Where torchvision keeps ``variant``'s default weights once downloaded (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _default_weights(variant).url.rsplit("/", 1)[-1]


def _default_weights(variant: str):
    """torchvision's default weights enum of ``variant`` (one of :data:`RAFT_VARIANTS`)."""
    # This module holds the project's only imports of torchvision's RAFT (tests/test_flow.py checks it), inside the
    # functions so that the runtime imports torchvision only when RAFT is built.
    from torchvision.models import optical_flow as of

    return {"raft_small": of.Raft_Small_Weights.DEFAULT, "raft_large": of.Raft_Large_Weights.DEFAULT}[variant]


def build_raft(variant: str = "raft_small", weights: WeightsEnum | None = None) -> nn.Module:
    """torchvision's ``variant`` (one of :data:`RAFT_VARIANTS`) with ``weights`` (a torchvision weights enum, which
    torchvision loads from the torch hub cache or downloads), or random ones when None: enough for tests and timings,
    since RAFT's cost does not depend on its weights."""
    from torchvision.models import optical_flow as of

    builder = {"raft_small": of.raft_small, "raft_large": of.raft_large}[variant]
    return builder(weights=weights, progress=False)


def load_raft_file(path: str | Path) -> tuple[nn.Module, str]:
    """A torchvision RAFT from a state dict file (``torch.save(model.state_dict(), path)``, or torchvision's own
    ``.pth``): the variant is the one whose parameter names match.

    Returns:
        ``(model, variant)`` with ``variant`` in :data:`RAFT_VARIANTS`.

    Raises:
        OptionError: Missing or unreadable file, or not a RAFT state dict (one line naming ``flow_weights`` and the
            file; the command line names its flag).
    """
    path = Path(path)
    if not path.is_file():
        raise OptionError("flow_weights", f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and IO errors all mean "not a readable state dict"
        raise OptionError("flow_weights", f"{path}: not a readable torch state dict ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise OptionError("flow_weights", f"{path}: not a state dict (a {type(state).__name__})")
    for variant in RAFT_VARIANTS:
        model = build_raft(variant)
        if set(model.state_dict()) == set(state):
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise OptionError(
                    "flow_weights", f"{path}: {variant} weights of the wrong shapes ({exc!s:.80})"
                ) from None
            return model, variant
    raise OptionError("flow_weights", f"{path}: not a torchvision RAFT state dict (raft_small or raft_large)")


def cached_raft(variant: str = "raft_small") -> nn.Module | None:
    """torchvision's ``variant`` with its default weights, loaded the usual way (``weights=...DEFAULT``) when they are
    already in the torch hub cache; None when they are not (this never downloads)."""
    if not hub_weights_file(variant).is_file():
        return None
    return build_raft(variant, _default_weights(variant))


@lru_cache(maxsize=2)
def pretrained_raft(variant: str = "raft_small", device: str = "cpu") -> RaftFlow:
    """torchvision's ``variant`` with its default weights as a full-size :class:`RaftFlow` on ``device``, built once
    per process (training's flow; the consistency stage never downloads, see :func:`cached_raft`).

    The weights are downloaded into the torch hub cache the first time.

    Raises:
        UserError: The weights cannot be had (offline, say): one line that names them and points to DIS.
    """
    weights = _default_weights(variant)
    try:
        model = build_raft(variant, weights)
    except Exception as exc:  # noqa: BLE001 - any download/IO failure becomes the same one-line user error
        raise UserError(
            f"RAFT weights {weights} are not available ({_first_line(exc)}); "
            "use flow method 'dis' (OpenCV, no download) for offline use"
        ) from None
    # Full size: training's flow is a ruler for the stage and for the loss, so it is not estimated coarser.
    return RaftFlow(model, device, scale=1.0, name=f"{variant} ({weights})")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@dataclass
class FlowChoice:
    """What :func:`choose_flow` picked: the estimator, and why DIS stands in for RAFT (None when nothing does)."""

    estimator: DisFlow | FallbackFlow
    reason: str | None


def choose_flow(device: torch.device, weights: str | Path | None = None, *, dis: DisFlow | None = None) -> FlowChoice:
    """The consistency stage's flow for a Stylizer on ``device``. One warning says why when DIS stands in for RAFT
    (a GPU without RAFT weights, a non-CUDA device with ``weights`` given, RAFT failing to load); a CPU Stylizer
    without ``weights`` gets DIS silently: that is the plan, not a fallback.

    Args:
        device: The Stylizer's device. RAFT runs only on CUDA (on a CPU, DIS is much cheaper).
        weights: A RAFT state dict file (:func:`load_raft_file`), or None for torchvision's ``raft_small`` weights
            if they are in the torch hub cache (:func:`hub_weights_file`; never downloaded here).
        dis: The DIS estimator to use or fall back to (default :class:`DisFlow` ()).

    Raises:
        OptionError: ``weights`` is given but is not a readable RAFT state dict (checked on every device).
    """
    dis = dis or DisFlow()
    loaded = load_raft_file(weights) if weights is not None else None
    if device.type != "cuda":
        if loaded is None and device.type == "cpu":
            return FlowChoice(dis, None)
        return _dis_because(dis, f"the device is {device}, and RAFT runs here only on CUDA")
    try:
        if loaded is not None:
            model, name = loaded[0], f"{loaded[1]} from {Path(weights).name}"
        else:
            model, name = cached_raft("raft_small"), "raft_small (torchvision C_T_V2)"
            if model is None:
                cached = hub_weights_file("raft_small")
                why = f"no RAFT weights (none in the torch hub cache: {cached}; give `flow_weights` a RAFT state dict)"
                return _dis_because(dis, why)
        return FlowChoice(FallbackFlow(RaftFlow(model, device, name=name), dis), None)
    except Exception as exc:  # noqa: BLE001 - a corrupt cache file, a device error: DIS still works
        return _dis_because(dis, f"RAFT failed to load ({_first_line(exc)})")


def _dis_because(dis: DisFlow, reason: str) -> FlowChoice:
    # The field in backticks: a command line writes it as its flag (inference.app.console).
    log.warning("consistency: optical flow runs with %s: %s", dis.label, reason, extra={"mentions": ("flow_weights",)})
    return FlowChoice(dis, reason)
