"""``styletrain evaluate --consistency LEVELS``: one artifact's per-frame output against the consistency stage
(:mod:`inference.engine.consistency`) at each level, on one clip.

Every figure is judged with the *ruler* flow (``--ruler``, estimated on the input at full size: DIS medium or
Farnebäck), finer than and, with Farnebäck, of another family than the stage's half-size DIS, so the stage is not
judged by its own motion estimate. Pairs across scene cuts are left out everywhere.

Per level it reports the warping error, contrast and colourfulness and their ratios to per-frame output, the time
ratio, and **ghosting**: in the pixels the ruler says were *not* visible in the previous frame (newly visible or
occluded), the RMS distance of the output from the fresh per-frame stylization, divided by the RMS distance a full
ghost would have there (the previous per-frame output carried along the ruler's flow, as a blend that ignores
occlusion would do). 0 means newly visible regions are exactly the fresh stylization; 1 means they carry old content
as fully as an occlusion-blind copy; an occlusion-blind blend at strength S scores about S.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from inference.core.colour import to_float
from inference.core.errors import OptionError
from inference.engine.flow import flow_tensor, occlusion_mask, warp


def parse_levels(text: str) -> list[float]:
    """``"0.5,0.8,1"`` -> ``[0.5, 0.8, 1.0]``; each in (0, 1] (an :class:`OptionError` names the field
    ``consistency``)."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OptionError("consistency", f"expects levels such as 0.5,0.8,1, got {text!r}") from None
    if not levels or any(not 0.0 < level <= 1.0 for level in levels):
        raise OptionError("consistency", f"levels must be in (0, 1], got {text!r}")
    return levels


def _chw(frame: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> float ``[1, 3, H, W]`` in [0, 1]."""
    return to_float(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).unsqueeze(0))


def ghosting(
    outputs: Sequence[np.ndarray],
    per_frame: Sequence[np.ndarray],
    flows: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    cuts: Sequence[bool],
) -> float:
    """Ghosting of ``outputs`` against the fresh ``per_frame`` stylization (see the module docstring).

    Args:
        outputs, per_frame: ``T`` frames each, ``uint8 [H,W,3]``.
        flows: The ruler's ``(forward, backward)`` input flows, ``T-1`` each, float32 ``[H,W,2]``
            (``forward[t]``: frame t -> t+1, ``backward[t]``: t+1 -> t).
        cuts: ``T-1`` flags; pairs across a cut are left out.

    Returns:
        The pooled ratio (0 = no ghost); NaN when no pixel is newly visible.
    """
    num = den = 0.0
    for t, cut in enumerate(cuts):
        if cut:
            continue
        back, ahead = flow_tensor(flows[1][t]), flow_tensor(flows[0][t])  # frame t+1 -> t, and t -> t+1
        hidden = 1.0 - occlusion_mask(back, ahead)  # pixels of frame t+1 not visible in frame t
        fresh = _chw(per_frame[t + 1])
        # "border" padding: pixels entering at the frame's edge are compared with the nearest old content.
        ghost = warp(_chw(per_frame[t]), back, padding_mode="border")
        num += float((hidden * (_chw(outputs[t + 1]) - fresh) ** 2).sum())
        den += float((hidden * (ghost - fresh) ** 2).sum())
    return float(np.sqrt(num / den)) if den > 0 else float("nan")


def evaluate_levels(
    network: torch.nn.Module,
    frames: list[np.ndarray],
    flows: tuple[list[np.ndarray], list[np.ndarray]],
    cuts: list[bool],
    per_frame: dict[str, Any],
    *,
    levels: Sequence[float],
    device: torch.device,
    batch_size: int,
) -> list[dict[str, Any]]:
    """The stage at each level against per-frame output.

    Args:
        network: The artifact's network.
        frames: ``uint8 [H,W,3]`` input frames.
        flows, cuts: The ruler's input flows and the scene-cut flags (``T-1`` each).
        per_frame: ``outputs`` (per-frame frames), ``warping_error``, ``contrast``, ``colourfulness``, ``seconds``
            (time to stylize the clip per frame, measured the same way as here).
        levels: Consistency levels in (0, 1].
        device, batch_size: Where and how the Stylizer runs.

    Returns:
        One dict per level: ``level``, ``warping_error``, ``contrast``, ``colourfulness``, ``ghosting``, the three
        ``*_ratio`` to per-frame and ``time_ratio``.
    """
    rows = []
    for level in levels:
        row = {"level": level} | _stylized(
            network, frames, flows, cuts, device=device, batch_size=batch_size, consistency=level
        )
        outputs, seconds = row.pop("outputs"), row.pop("seconds")
        row["ghosting"] = ghosting(outputs, per_frame["outputs"], flows, cuts)
        for key in ("warping_error", "contrast", "colourfulness"):
            row[f"{key}_ratio"] = row[key] / per_frame[key] if per_frame[key] else None
        row["time_ratio"] = seconds / per_frame["seconds"] if per_frame["seconds"] > 0 else None
        rows.append(row)
    return rows


def per_frame_reference(network: torch.nn.Module, frames, flows, cuts, *, device, batch_size: int) -> dict[str, Any]:
    """Per-frame outputs of ``network`` on ``frames`` with the same Stylizer settings as :func:`evaluate_levels`, and
    their warping error, contrast, colourfulness and stylizing time."""
    return _stylized(network, frames, flows, cuts, device=device, batch_size=batch_size, consistency=0.0)


def _stylized(network, frames, flows, cuts, *, device, batch_size: int, consistency: float) -> dict[str, Any]:
    """``outputs``, ``seconds`` (to stylize the clip), ``warping_error``, ``contrast`` and ``colourfulness`` of one
    run of the Stylizer (the torch backend) at ``consistency``."""
    from inference.engine.options import RuntimeOptions
    from inference.engine.stylizer import Stylizer
    from styletrain.output_stats import clip_stats
    from styletrain.temporal.loss import warping_error

    options = RuntimeOptions(device=device, batch_size=batch_size, backend="torch", consistency=consistency)
    stylizer = Stylizer(network, options)
    start = time.perf_counter()
    outputs = list(stylizer.frames(frames))
    seconds = time.perf_counter() - start
    return {"outputs": outputs, "seconds": seconds, "warping_error": warping_error(outputs, *flows, cuts)} | clip_stats(
        outputs
    )
