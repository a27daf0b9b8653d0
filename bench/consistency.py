"""The consistency stage (``stylize-video --consistency``) against per-frame output: quality on real clips and time.

For one artifact (``--model``) on each clip, in the same run:

* **quality** (:mod:`styletrain.consistency_eval`): per-frame output vs the stage at each ``--levels`` value, at
  640x360: warping error ratio, contrast and colourfulness ratios, and ghosting, each judged with two rulers
  estimated on the input at full size, both finer than the stage's half-size DIS: DIS medium and Farnebäck (another
  family). Pairs across scene cuts are left out, and counted;
* **time**: :func:`inference.app.convert.stylize_file` end to end (decode, network, stage, libx264 at the same settings,
  mux) per-frame vs ``--consistency`` at the default level, alternating, after one warm-up run each, ``--repeats``
  times; the median ratio of wall-clock times.

Usage (from the repository root)::

    python bench/consistency.py --model artifacts/light.safetensors --repeats 3

Results: a summary on stdout and ``bench/results/consistency-<device>.json``.
"""

from __future__ import annotations

import os
import sys

# Run as ``python bench/consistency.py`` this folder comes first on sys.path and bench/inference.py would shadow the
# ``inference`` package; drop that entry.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from inference.app.cli import DEFAULT_CONSISTENCY  # noqa: E402
from inference.app.convert import stylize_file  # noqa: E402
from inference.engine.flow import scene_cuts  # noqa: E402
from inference.engine.stylizer import Stylizer  # noqa: E402
from inference.model.artifact import load_artifact  # noqa: E402
from styletrain.consistency_eval import evaluate_levels, per_frame_reference  # noqa: E402
from styletrain.data.video_frames import read_clip  # noqa: E402
from styletrain.temporal.loss import clip_flows  # noqa: E402

DATA = Path("/work/shared/data/videos")
DEFAULT_CLIPS = [DATA / "big_buck_bunny_pan_2s.mp4", DATA / "sintel_2s.mp4", DATA / "big_buck_bunny_5s.mp4"]


def quality(network: torch.nn.Module, clip: Path, frames: int, levels: list[float], rulers: list[str]) -> dict:
    """Per ruler, per level: the stage's figures against per-frame output on ``clip`` (640x360)."""
    inputs = read_clip(clip, max_frames=frames, max_side=640)
    cuts = scene_cuts(inputs)
    result: dict[str, Any] = {"clip": clip.name, "frames": len(inputs), "cut_pairs_left_out": sum(cuts)}
    dev = torch.device("cpu")
    for ruler in rulers:
        flows = clip_flows(inputs, method=ruler)
        reference = per_frame_reference(network, inputs, flows, cuts, dev, 1)
        rows = evaluate_levels(network, inputs, flows, cuts, reference, levels, dev, 1)
        result[ruler] = [{k: v for k, v in row.items() if k != "time_ratio"} for row in rows]
    return result


def timing(path: Path, clip: Path, level: float, repeats: int, seconds_of_clip: float) -> dict:
    """End-to-end seconds per-frame vs ``level``, alternating, after one warm-up each; the median ratio."""
    stylizers = {
        "per_frame": Stylizer.from_artifact(path, device="cpu"),
        "consistency": Stylizer.from_artifact(path, device="cpu", consistency=level),
    }
    seconds: dict[str, list[float]] = {name: [] for name in stylizers}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(repeats + 1):
            for name, stylizer in stylizers.items():
                start = time.perf_counter()
                out = Path(tmp) / f"{name}.mp4"
                stylize_file(stylizer, clip, out, overwrite=True, max_side=640, duration=seconds_of_clip)
                if run > 0:  # run 0 is the warm-up (ONNX export, allocator, page cache)
                    seconds[name].append(time.perf_counter() - start)
    ratios = [c / p for c, p in zip(seconds["consistency"], seconds["per_frame"], strict=True)]
    backend = stylizers["per_frame"].backend
    return {"clip": clip.name, "seconds_of_clip": seconds_of_clip, "level": level, "backend": backend,
            "encoder": "libx264 crf 18 preset medium",
            "seconds": seconds, "time_ratio_median": statistics.median(ratios), "time_ratios": ratios}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the artifact (a `light` network for the issue's targets)")
    parser.add_argument("--about", default="", help="how the artifact was made (recorded: steps, loss net...)")
    parser.add_argument("--clips", nargs="*", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--frames", type=int, default=40, help="frames per clip for the quality figures")
    parser.add_argument("--levels", default=f"0.5,{DEFAULT_CONSISTENCY},1", help="consistency levels")
    parser.add_argument("--rulers", default="dis,farneback")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of the first clip for the timing")
    parser.add_argument("--out", type=Path, default=Path("bench/results/consistency-cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    levels = [float(v) for v in args.levels.split(",")]
    network = load_artifact(args.model, device="cpu").network
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/consistency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)", "torch": torch.__version__,
        "model": str(args.model), "about": args.about, "size": "640x360", "default_level": DEFAULT_CONSISTENCY,
    }  # fmt: skip
    report["quality"] = []
    for clip in args.clips:
        print(f"quality: {clip.name}", file=sys.stderr, flush=True)
        report["quality"].append(quality(network, clip, args.frames, levels, args.rulers.split(",")))
    print(f"timing: {args.clips[0].name}", file=sys.stderr, flush=True)
    report["timing"] = timing(Path(args.model), args.clips[0], DEFAULT_CONSISTENCY, args.repeats, args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for q in report["quality"]:
        for ruler in args.rulers.split(","):
            for row in q[ruler]:
                print(f"{q['clip']:<28} {ruler:<9} S={row['level']:<4} warp x{row['warping_error_ratio']:.2f} "
                      f"contrast x{row['contrast_ratio']:.3f} colour x{row['colourfulness_ratio']:.3f} "
                      f"ghosting {row['ghosting']:.3f}")  # fmt: skip
    print(f"time ratio (median of {args.repeats}): {report['timing']['time_ratio_median']:.3f}")


if __name__ == "__main__":
    main()
