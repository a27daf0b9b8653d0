"""How right the project's optical flow is: endpoint error and occlusion detection against MPI-Sintel ground truth.

Every estimator the project runs is measured on the Sintel pairs of the data root (``flow/<pair>/``: ``frame1.png``,
``frame2.png``, ``flow.flo``, ``occlusions.png``, ``invalid.png``; see ``bench/environment.py``):

* ``dis``: OpenCV DIS, medium preset, full size (training's default flow for ``video_pairs`` and its metric);
* ``dis-stage``: DIS as the consistency stage runs it (its preset, at its estimation scale);
* ``farneback``: OpenCV Farnebäck at full size (``styletrain evaluate``'s ruler);
* ``raft_small`` and ``raft``: torchvision RAFT with its pretrained weights (training's estimators: on CUDA when there
  is one), where they are in the torch hub cache (never downloaded here; otherwise the row says "not measured").

Per pair and estimator: the mean endpoint error (EPE, pixels) over the valid pixels and over the pixels visible in
both frames, the share of pixels off by more than 3 px, and the forward-backward occlusion mask
(:func:`inference.engine.flow.occlusion_mask`, the one the temporal loss and the warping error use) scored against
the ground-truth occlusions: precision and recall of "occluded", and the share of truly visible pixels it keeps.
Times are the median of ``--repeats`` runs of one direction, on this machine's CPU.

    python -m bench.flow_accuracy                 # all pairs under <data root>/flow
    python -m bench.flow_accuracy --pairs sintel_alley_1 --repeats 1

Results: a table on stdout and ``bench/results/flow-accuracy-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.environment import data_root, environment
from inference.engine.device_flow import FLOW_PRESET, FLOW_SCALE, hub_weights_file
from inference.engine.flow import dis_flow, flow_tensor, occlusion_mask, to_gray
from inference.io.image_reader import read_image
from styletrain.temporal.flow import ESTIMATORS, read_flo

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def estimators() -> dict[str, Estimator | None]:
    """The estimators by name, each ``(uint8 RGB a, uint8 RGB b) -> float32 [H,W,2]``: training's own
    (:data:`styletrain.temporal.flow.ESTIMATORS`; RAFT on CUDA when there is one) and the stage's DIS; None for a
    RAFT whose weights are not in the torch hub cache (its estimator would download them)."""
    found: dict[str, Estimator | None] = {
        "dis": ESTIMATORS["dis"],
        "dis-stage": lambda a, b: dis_flow(to_gray(a), to_gray(b), FLOW_PRESET, FLOW_SCALE),
        "farneback": ESTIMATORS["farneback"],
    }
    for variant, name in (("raft_small", "raft_small"), ("raft_large", "raft")):
        found[name] = ESTIMATORS[name] if hub_weights_file(variant).is_file() else None
    return found


def load_pair(folder: Path) -> dict[str, np.ndarray]:
    """A Sintel pair: ``frame1``/``frame2`` uint8 RGB, ``flow`` float32 [H,W,2], ``valid`` and ``visible`` bool
    [H,W] (visible: valid and not occluded in frame2)."""
    valid = read_image(folder / "invalid.png")[..., 0] < 128
    occluded = read_image(folder / "occlusions.png")[..., 0] >= 128
    return {
        "frame1": read_image(folder / "frame1.png"),
        "frame2": read_image(folder / "frame2.png"),
        "flow": read_flo(folder / "flow.flo"),
        "valid": valid,
        "visible": valid & ~occluded,
    }


def score(pair: dict[str, np.ndarray], forward: np.ndarray, backward: np.ndarray) -> dict[str, float]:
    """Endpoint errors of ``forward`` against the ground truth and the occlusion mask of the estimated pair."""
    error = np.linalg.norm(forward - pair["flow"], axis=-1)
    kept = occlusion_mask(flow_tensor(forward), flow_tensor(backward))[0, 0].numpy() > 0.5
    said_occluded, truly_occluded = ~kept & pair["valid"], ~pair["visible"] & pair["valid"]
    hits = float((said_occluded & truly_occluded).sum())
    return {
        "epe": float(error[pair["valid"]].mean()),
        "epe_visible": float(error[pair["visible"]].mean()),
        "over_3px": float((error[pair["valid"]] > 3.0).mean()),
        "occlusion_precision": hits / max(float(said_occluded.sum()), 1.0),
        "occlusion_recall": hits / max(float(truly_occluded.sum()), 1.0),
        "visible_kept": float(kept[pair["visible"]].mean()),
    }


def measure(pair: dict[str, np.ndarray], estimate: Estimator, repeats: int) -> dict[str, float]:
    """Score one estimator on one pair (both directions), and time one direction (median of ``repeats``)."""
    a, b = pair["frame1"], pair["frame2"]
    forward, backward = estimate(a, b), estimate(b, a)  # the first call also warms the estimator up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        estimate(a, b)
        times.append(time.perf_counter() - t0)
    return {**score(pair, forward, backward), "seconds": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flow-dir", type=Path, default=None, help="folder of Sintel pairs (default: <data>/flow)")
    parser.add_argument("--pairs", nargs="*", default=None, help="pair folder names (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per estimator and pair")
    parser.add_argument("--out", type=Path, default=Path("bench/results/flow-accuracy-cpu.json"))
    args = parser.parse_args(argv)
    folder = args.flow_dir or data_root() / "flow"
    names = args.pairs or sorted(p.name for p in folder.iterdir() if (p / "flow.flo").is_file())
    if not names:
        print(f"error: {folder}: no Sintel pairs (folders holding flow.flo)", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        pair = load_pair(folder / name)
        for method, estimate in estimators().items():
            row = {"pair": name, "method": method, "size": list(pair["frame1"].shape[:2])}
            if estimate is None:
                row["status"] = "not measured: no pretrained weights in the torch hub cache"
            else:
                row.update(measure(pair, estimate, args.repeats))
            rows.append(row)
            print(_line(row), flush=True)
    record = {"environment": environment("cpu"), "benchmark": "flow accuracy on MPI-Sintel (clean)", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def _line(row: dict) -> str:
    if "epe" not in row:
        return f"{row['pair']:16s} {row['method']:11s} {row['status']}"
    return (
        f"{row['pair']:16s} {row['method']:11s} EPE {row['epe']:6.2f} px (visible {row['epe_visible']:6.2f}), "
        f">3 px {row['over_3px']:5.1%}, occlusion P/R {row['occlusion_precision']:4.2f}/{row['occlusion_recall']:4.2f}"
        f", visible kept {row['visible_kept']:5.1%}, {row['seconds'] * 1000:7.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
