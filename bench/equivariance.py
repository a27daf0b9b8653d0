"""Shift error of style networks, before and after the alias-free design, and what the design costs.

For each network name (random init, ``--seeds`` seeds, mean) and each ``--model`` artifact, on real frames (the
first frames of ``--clip``, at 640x360): the shift error of :mod:`styletrain.equivariance` for integer shifts up to
the network's stride, sub-pixel shifts of 0.25 and 0.5 px, a 5 % zoom and a 2 degree rotation, in grey levels and
relative to the output's standard deviation. Then the model-only CPU time of each named network at 640x360, the
original design (``alias_free=False``) and the alias-free one alternating, after a warm-up, median of
``--repeats``, as a ratio, on torch eager and on ONNX Runtime (the CPU default of ``stylize-video``).

Usage (from the repository root)::

    python -m bench.equivariance --model docs/models/starry_night+great_wave-hed-light-original.safetensors \\
        --model docs/models/starry_night+great_wave-hed-light.safetensors

Results: a table on stdout and ``bench/results/equivariance-cpu.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.environment import environment, shared_clip
from inference.model.artifact import load_artifact
from inference.model.networks import build_network
from styletrain.data.video_frames import read_clip
from styletrain.equivariance import equivariance_report

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLIP = shared_clip("big_buck_bunny_pan_2s.mp4")
TIMING_SIZE = (360, 640)


def frames_tensor(clip: Path, count: int) -> torch.Tensor:
    """The first ``count`` frames of ``clip`` at 640 px wide as ``[count, 3, H, W]`` floats in [0, 1]."""
    frames = read_clip(str(clip), max_frames=count, max_side=640)
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


def mean_reports(reports: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per transform and unit, the mean over ``reports`` (one per seed)."""
    return {
        name: {unit: statistics.fmean(r[name][unit] for r in reports) for unit in reports[0][name]}
        for name in reports[0]
    }


def random_init_rows(names: list[str], images: torch.Tensor, seeds: int) -> dict[str, Any]:
    """Shift error of each named network, original and alias-free design, random init, mean over seeds."""
    rows: dict[str, Any] = {}
    for name in names:
        for alias_free in (False, True):
            reports = []
            for seed in range(seeds):
                torch.manual_seed(seed)
                net = build_network(name, alias_free=alias_free).eval()
                reports.append(equivariance_report(net, images, stride=net.stride))
            rows[f"{name} ({'alias-free' if alias_free else 'original'})"] = mean_reports(reports)
    return rows


def artifact_rows(models: list[str], images: torch.Tensor) -> dict[str, Any]:
    """Shift error of each artifact (its first style)."""
    rows = {}
    for path in models:
        net = load_artifact(path).network.eval()
        rows[path] = equivariance_report(net, images, stride=net.stride)
    return rows


def timed_forward(net: torch.nn.Module, backend: str):
    """``net``'s forward on ``backend``: torch eager, or ONNX Runtime as ``stylize-video`` runs it on the CPU by
    default (``--backend auto`` with onnxruntime installed)."""
    if backend == "torch":
        return net
    from inference.engine.onnx_backend import OrtNetwork

    return OrtNetwork(net)


@torch.no_grad()
def cost_rows(names: list[str], repeats: int, backends: list[str]) -> dict[str, Any]:
    """Model-only CPU seconds per 640x360 frame, original vs alias-free on each backend, alternating, after a
    warm-up, median of ``repeats``; rows ``"name/backend"``."""
    x = torch.rand(1, 3, *TIMING_SIZE)
    rows = {}
    for name in names:
        for backend in backends:
            nets = {
                design: timed_forward(build_network(name, alias_free=design == "alias-free").eval(), backend)
                for design in ("original", "alias-free")
            }
            times: dict[str, list[float]] = {design: [] for design in nets}
            for net in nets.values():
                net(x)  # warm-up: allocator and kernel selection
            for _ in range(repeats):
                for design, net in nets.items():
                    start = time.perf_counter()
                    net(x)
                    times[design].append(time.perf_counter() - start)
            medians = {design: statistics.median(t) for design, t in times.items()}
            rows[f"{name}/{backend}"] = {"seconds": medians, "ratio": medians["alias-free"] / medians["original"]}
    return rows


def print_table(title: str, rows: dict[str, Any]) -> None:
    """One line per row: relative shift error per transform (grey levels in brackets for 1 px)."""
    print(title)
    for name, report in rows.items():
        cells = " ".join(f"{t}={v['relative']:.3f}" for t, v in report.items())
        print(f"  {name}: 1 px {report['shift_1']['grey']:.1f} grey levels; relative: {cells}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="real frames: a video or a frame folder")
    parser.add_argument("--frames", type=int, default=2, help="frames of the clip measured (default 2)")
    parser.add_argument("--networks", default="johnson,light", help="network names measured at random init")
    parser.add_argument("--seeds", type=int, default=3, help="random initialisations per network (default 3)")
    parser.add_argument("--model", action="append", default=[], help="an artifact to measure; repeatable")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per design (default 7)")
    parser.add_argument("--backends", default="torch,onnxruntime", help="backends timed (default both)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "equivariance-cpu.json")
    args = parser.parse_args(argv)
    if not args.clip.exists():
        parser.error(f"{args.clip}: no such clip (pass --clip)")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.networks.split(",") if n]
    images = frames_tensor(args.clip, args.frames)
    result: dict[str, Any] = {
        "clip": str(args.clip),
        "frames": args.frames,
        "size": list(images.shape[-2:]),
        "environment": environment("cpu"),
        "random_init": random_init_rows(names, images, args.seeds),
        "artifacts": artifact_rows(args.model, images),
        "cost_640x360": cost_rows(names, args.repeats, [b for b in args.backends.split(",") if b]),
    }
    print_table(f"random init, mean of {args.seeds} seeds, {args.clip.name}:", result["random_init"])
    if args.model:
        print_table("artifacts:", result["artifacts"])
    for name, row in result["cost_640x360"].items():
        ms = {k: round(v * 1000, 1) for k, v in row["seconds"].items()}
        print(f"cost {name} at 640x360: {ms} ms, alias-free / original = {row['ratio']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
