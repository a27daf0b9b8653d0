"""The consistency stage (``stylize-video --consistency``) against per-frame output: quality on real clips and time.

For one artifact (``--model``) on each clip, in the same run:

* **quality** (:mod:`styletrain.consistency_eval`): per-frame output vs the stage at each ``--levels`` value, at
  640x360: warping error ratio, contrast and colourfulness ratios, and ghosting, each judged with two rulers
  estimated on the input at full size, both finer than the stage's half-size DIS: DIS medium and Farnebäck (another
  family). Pairs across scene cuts are left out, and counted. With ``--input-noise SIGMA`` the network is wrapped in
  :class:`InputNoise` for these figures (a stand-in for a trained artifact's flicker where none can be trained);
* **time**: :func:`inference.app.convert.stylize_file` end to end (decode, network, stage, libx264 at the same settings,
  mux) per-frame vs ``--consistency`` at the default level, alternating, after one warm-up run each, ``--repeats``
  times; the median ratio of wall-clock times;
* **GPU rows** (flow on the device, 1080p; "not measured" without CUDA): ms per frame pair (forward and backward) of
  RAFT on the device (:class:`inference.engine.device_flow.RaftFlow`, the weights the stage would pick, else random
  raft_small weights: the same arithmetic, so the same time) beside the stage's DIS on the host, and end to end at
  1920x1080 on the device: per-frame vs ``--consistency`` with the RAFT flow, frames/s of each.

Usage (from the repository root)::

    python -m bench.consistency --model artifacts/light.safetensors --repeats 3

Results: a summary on stdout and ``bench/results/consistency-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import torch

from bench.environment import data_root, environment
from inference.app.cli import DEFAULT_CONSISTENCY
from inference.app.convert import stylize_file
from inference.engine.device_flow import DisFlow, RaftFlow, build_raft, cached_raft, load_raft_file
from inference.engine.flow import scene_cuts, to_gray
from inference.engine.stylizer import Stylizer
from inference.model.artifact import load_artifact
from styletrain.consistency_eval import evaluate_levels, per_frame_reference
from styletrain.data.video_frames import read_clip
from styletrain.temporal.loss import clip_flows

DATA = data_root() / "videos"
DEFAULT_CLIPS = [DATA / "big_buck_bunny_pan_2s.mp4", DATA / "sintel_2s.mp4", DATA / "big_buck_bunny_5s.mp4"]


class InputNoise(torch.nn.Module):
    """``network`` fed its input plus Gaussian noise (``sigma`` in [0, 1] units) seeded by the input's bytes: the
    network turns the noise into changes of its own texture, as trained networks turn a video's small frame-to-frame
    changes (codec noise, sub-pixel motion) into flicker. Like a real network it stays deterministic (the same frame
    gives the same output in the per-frame and the consistent run) while any change of the input changes the texture.
    Only for the quality figures; the timing uses the artifact itself."""

    def __init__(self, network: torch.nn.Module, sigma: float) -> None:
        super().__init__()
        self.network, self.sigma = network, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seed = zlib.crc32((x * 255).round().to(torch.uint8).cpu().numpy().tobytes())
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(x)
        return self.network((x + self.sigma * noise).clamp(0.0, 1.0))


def quality(network: torch.nn.Module, clip: Path, frames: int, levels: list[float], rulers: list[str]) -> dict:
    """Per ruler, per level: the stage's figures against per-frame output on ``clip`` (640x360)."""
    inputs = read_clip(clip, max_frames=frames, max_side=640)
    cuts = scene_cuts(inputs)
    result: dict[str, Any] = {"clip": clip.name, "frames": len(inputs), "cut_pairs_left_out": sum(cuts)}
    dev = torch.device("cpu")
    for ruler in rulers:
        flows = clip_flows(inputs, method=ruler)
        reference = per_frame_reference(network, inputs, flows, cuts, device=dev, batch_size=1)
        rows = evaluate_levels(network, inputs, flows, cuts, reference, levels=levels, device=dev, batch_size=1)
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


def _ms_per_pair(estimator, frames: list, grays: list, repeats: int) -> float:
    """Median over ``repeats`` of the mean ms per pair of ``estimator`` along ``frames``, after one warm-up pair."""
    estimator.pair(frames[0], frames[1], grays[0], grays[1])
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(1, len(frames)):
            estimator.pair(frames[i - 1], frames[i], grays[i - 1], grays[i])
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # RAFT's flows are on the device: wait for the last ones
        runs.append(1000 * (time.perf_counter() - start) / (len(frames) - 1))
    return statistics.median(runs)


def gpu_rows(
    path: Path, clip: Path, flow_weights: str | None, repeats: int, frames: int = 12, size=(1920, 1080), device="cuda"
) -> dict:
    """Flow on the device at ``size`` (see the module docstring); ``{"status": "not measured"}`` without CUDA."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return {"status": "not measured", "why": "no CUDA device on this machine"}
    import cv2

    inputs = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in read_clip(clip, max_frames=frames)]
    grays = [to_gray(f) for f in inputs]
    with tempfile.TemporaryDirectory() as tmp:
        model = load_raft_file(flow_weights)[0] if flow_weights else cached_raft("raft_small")
        if model is None:  # no weights here: random ones cost the same arithmetic
            model, flow_weights = build_raft("raft_small"), str(Path(tmp) / "raft_small_random.pth")
            torch.save(model.state_dict(), flow_weights)
        raft = RaftFlow(model, device, name=Path(flow_weights).name if flow_weights else "raft_small (hub cache)")
        row: dict[str, Any] = {"status": "measured", "device": _device_name(device), "size": "{}x{}".format(*size),
                               "raft": raft.label, "dis": DisFlow().label}  # fmt: skip
        row["raft_ms_per_pair"] = _ms_per_pair(raft, inputs, grays, repeats)
        row["dis_ms_per_pair"] = _ms_per_pair(DisFlow(), inputs, grays, repeats)
        levels = {"per_frame": 0.0, "consistency": DEFAULT_CONSISTENCY}
        fps: dict[str, list[float]] = {name: [] for name in levels}
        stylizers = {
            name: Stylizer.from_artifact(path, device=device, consistency=level, flow_weights=flow_weights)
            for name, level in levels.items()
        }
        for run in range(repeats + 1):
            for name, stylizer in stylizers.items():
                out = Path(tmp) / f"{name}.mp4"
                res = stylize_file(stylizer, clip, out, overwrite=True, size=size, duration=frames / 24)
                if run > 0:  # run 0 is the warm-up
                    fps[name].append(res.fps)
    row["end_to_end_fps"] = {name: statistics.median(v) for name, v in fps.items()}
    return row


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else platform.processor() or "cpu"


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
    parser.add_argument(
        "--input-noise",
        type=float,
        default=0.0,
        help="quality figures: Gaussian noise (sigma, "
        "[0, 1] units) added to each input frame before the network (InputNoise); 0 = none",
    )
    parser.add_argument("--skip-timing", action="store_true", help="only the quality figures")
    parser.add_argument("--flow-weights", default=None, help="RAFT weights for the GPU rows (see stylize-video)")
    parser.add_argument("--gpu-only", action="store_true", help="only the GPU rows (flow on the device, 1080p)")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    levels = [float(v) for v in args.levels.split(",")]
    network = load_artifact(args.model, device="cpu").network
    if args.input_noise > 0:
        network = InputNoise(network, args.input_noise)
    report: dict[str, Any] = {
        **environment("cpu"),
        "command": "python -m bench.consistency " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model), "about": args.about, "input_noise": args.input_noise, "size": "640x360",
        "default_level": DEFAULT_CONSISTENCY,
    }  # fmt: skip
    report["gpu"] = gpu_rows(Path(args.model), args.clips[0], args.flow_weights, args.repeats)
    _print_gpu(report["gpu"])
    if args.gpu_only:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        return
    report["quality"] = []
    for clip in args.clips:
        print(f"quality: {clip.name}", file=sys.stderr, flush=True)
        report["quality"].append(quality(network, clip, args.frames, levels, args.rulers.split(",")))
    if not args.skip_timing:
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
    if "timing" in report:
        print(f"time ratio (median of {args.repeats}): {report['timing']['time_ratio_median']:.3f}")


def _print_gpu(row: dict) -> None:
    if row["status"] != "measured":
        print(f"GPU rows (flow on the device, 1920x1080): not measured ({row['why']})")
        return
    e2e = row["end_to_end_fps"]
    print(f"GPU rows on {row['device']}, {row['size']}: {row['raft']} {row['raft_ms_per_pair']:.1f} ms/pair, "
          f"{row['dis']} {row['dis_ms_per_pair']:.1f} ms/pair; end to end per-frame {e2e['per_frame']:.1f} frames/s, "
          f"consistency {e2e['consistency']:.1f} frames/s")  # fmt: skip


if __name__ == "__main__":
    main()
