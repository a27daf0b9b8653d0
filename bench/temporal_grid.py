"""Check the temporal training default on a grid: styles x seeds x networks, each temporal run against its MATCHED
per-frame run, judged on a real clip that no training used, with scene cuts left out.

Matched: both runs of a cell build their network under the same seed (identical initial weights), draw their crops
from the same data generator (identical images in the same order) and the temporal run's synthetic motion comes from
the module's private generator (``--model.temporal.motion_seed``), so it cannot shift the data. Whatever differs
between the two trained networks is the temporal term's doing.

Per cell it prints the warping error ratio (temporal / per-frame), the contrast ratio and both models'
``content_kept`` (edge correlation with the input, :func:`styletrain.output_stats.content_kept`); then the median and
the worst cell, and the issue's targets: warping error <= 0.5x at contrast >= 0.8x in at least 10 of 12 cells, and
no cell above 1.0x. Cuts: a pair of input frames whose own warping error (flow on the input, DIS) exceeds
``--cut-factor`` times the clip's median is a scene cut; its pair is left out and counted. ``--strip DIR`` writes one
PNG per cell (input | per-frame | temporal, three frames) to look at::

    python -m bench.build_hed_vgg16          # artifacts/hed_vgg16.pth
    python -m bench.temporal_grid --vgg-weights artifacts/hed_vgg16.pth --styles starry_night,great_wave \\
        --seeds 0 --networks tiny --steps 150 --image-size 96 --out bench/results/temporal-grid-hed-cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.temporal_sweep import DEFAULT_DATA, SHARED, crop_batch, device_label, load_stills

DEFAULT_CLIP = SHARED / "videos" / "big_buck_bunny_pan_2s.mp4"
VIDEO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "video.yaml"


def shipped_temporal_balance() -> float:
    """The temporal balance that ``configs/video.yaml`` ships: the default this grid checks."""
    import yaml

    return float(yaml.safe_load(VIDEO_CONFIG.read_text())["model"]["temporal"]["balance"])


def build(args: argparse.Namespace, cell: dict, temporal: bool):
    """The module of one run (``cell``: style, seed, network, vgg_weights); the seed is set right before
    construction, so both runs of a cell start equal."""
    from styletrain.module import StyleTransferModule
    from styletrain.module_config import LossConfig, TemporalConfig

    balance = {"balance": args.temporal_balance, "calibration_steps": args.calibration_steps} if temporal else {}
    torch.manual_seed(cell["seed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if cell["vgg_weights"] == "random" else "default")
        module = StyleTransferModule(
            style=str(SHARED / "styles" / f"{cell['style']}.jpg"),
            style_size=args.style_size,
            network=cell["network"],
            vgg_weights=cell["vgg_weights"],
            loss=LossConfig(style_balance=args.style_balance),
            temporal=TemporalConfig(motion_seed=cell["seed"], **balance),
            optimizer=functools.partial(torch.optim.Adam, lr=args.lr),  # recorded; train() steps its own Adam
        )
    return module.to(args.device)


def train(args, module, stills: list[torch.Tensor], cell: dict) -> float:
    """``cell["steps"]`` Adam steps; crops from a generator of their own (the same in both runs of a cell)."""
    module.train()
    optimizer = torch.optim.Adam(module.net.parameters(), lr=args.lr)
    data_gen = torch.Generator().manual_seed(cell["seed"])
    start = time.perf_counter()
    for _ in range(cell["steps"]):
        content = crop_batch(stills, args.image_size, args.batch_size, data_gen).to(args.device)
        batch = {"content": content}
        generator = module.motion_generator() if module.temporal_on else None
        loss = module.loss_terms(batch, generator=generator)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if args.device.type == "cuda":
        torch.cuda.synchronize(args.device)
    return time.perf_counter() - start


class Clip:
    """The evaluation clip: frames, input flows and the pairs kept (cuts left out), measured once."""

    def __init__(self, path: Path, max_frames: int, max_side: int, cut_factor: float) -> None:
        from styletrain.data.video_frames import read_clip
        from styletrain.temporal.loss import clip_flows, pair_warping_error

        self.frames = read_clip(path, max_frames=max_frames, max_side=max_side)
        self.flows = clip_flows(self.frames, method="dis")
        own = [self._pair(pair_warping_error, self.frames, t) for t in range(len(self.frames) - 1)]
        median = statistics.median(own)
        self.kept = [t for t, e in enumerate(own) if e <= cut_factor * max(median, 1e-8)]
        self.cuts = len(own) - len(self.kept)

    def _pair(self, fn, frames, t: int) -> float:
        from styletrain.temporal.loss import _as_chw, _as_flow

        fw, bw = (_as_flow(f[t]) for f in self.flows)
        return float(fn(_as_chw(frames[t]), _as_chw(frames[t + 1]), fw, bw))

    def warping_error(self, outputs: list[np.ndarray]) -> float:
        from styletrain.temporal.loss import pair_warping_error

        return float(np.mean([self._pair(pair_warping_error, outputs, t) for t in self.kept]))


@torch.no_grad()
def stylize(module, frames: list[np.ndarray]) -> list[np.ndarray]:
    """``uint8 [H, W, 3]`` frames through the trained network (on its device), in batches of 4."""
    module.eval()
    device = next(module.net.parameters()).device
    out = []
    for i in range(0, len(frames), 4):
        x = torch.from_numpy(np.stack(frames[i : i + 4])).to(device).permute(0, 3, 1, 2).float() / 255.0
        out += list((module(x).clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy())
    return out


def measure(clip: Clip, outputs: list[np.ndarray]) -> dict[str, float]:
    from styletrain.output_stats import clip_stats

    return {"warping_error": clip.warping_error(outputs)} | clip_stats(outputs, inputs=clip.frames)


def run_cell(args, clip: Clip, stills, cell: dict) -> dict:
    """Train the matched pair of one ``cell`` (style, seed, network, steps, vgg_weights) and compare them on the
    clip; returns the cell with its measurements added."""
    cell = dict(cell)
    outputs = {}
    for name, temporal in (("per_frame", False), ("temporal", True)):
        module = build(args, cell, temporal)
        cell[f"{name}_train_s"] = train(args, module, stills, cell)
        outputs[name] = stylize(module, clip.frames)
        cell[name] = measure(clip, outputs[name])
        if temporal and module.temporal_balance is not None:
            cell["temporal_weight"] = float(module.temporal_balance.weight)
    cell["warp_ratio"] = cell["temporal"]["warping_error"] / cell["per_frame"]["warping_error"]
    cell["contrast_ratio"] = cell["temporal"]["contrast"] / cell["per_frame"]["contrast"]
    cell["meets"] = cell["warp_ratio"] <= 0.5 and cell["contrast_ratio"] >= 0.8
    if args.strip is not None:
        tag = "random-" if cell["vgg_weights"] == "random" else ""
        name = f"{tag}{cell['style']}-s{cell['seed']}-{cell['network']}-{cell['steps']}steps.png"
        save_strip(args.strip / name, clip.frames, outputs)
    return cell


def save_strip(path: Path, frames: list[np.ndarray], outputs: dict[str, list[np.ndarray]]) -> None:
    """Rows: input, per-frame, temporal; columns: three frames spread over the clip."""
    from PIL import Image

    picks = [0, len(frames) // 2, len(frames) - 1]
    rows = [np.concatenate([seq[i] for i in picks], axis=1) for seq in (frames, *outputs.values())]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def summary(cells: list[dict]) -> dict:
    """Median and worst over ``cells`` (the main grid only: the extra-length and random-feature cells are
    reported beside it, not counted)."""
    ratios = [c["warp_ratio"] for c in cells]
    worst = max(cells, key=lambda c: c["warp_ratio"])
    return {
        "cells": len(cells),
        "cells_meeting": sum(c["meets"] for c in cells),
        "median_warp_ratio": statistics.median(ratios),
        "median_contrast_ratio": statistics.median(c["contrast_ratio"] for c in cells),
        "worst_warp_ratio": worst["warp_ratio"],
        "worst_cell": f"{worst['style']} seed {worst['seed']} {worst['network']}",
        "no_cell_worse_than_per_frame": max(ratios) <= 1.0,
    }


def print_cell(c: dict) -> None:
    pf, tp = c["per_frame"], c["temporal"]
    print(
        f"{c['style']:>13} s{c['seed']} {c['network']:>5} {c['steps']} steps {c['vgg_weights']}: "
        f"warp {c['warp_ratio']:.3f}x contrast "
        f"{c['contrast_ratio']:.3f}x | content_kept per-frame {pf['content_kept']:.3f} temporal "
        f"{tp['content_kept']:.3f} | {'meets' if c['meets'] else 'misses'}",
        flush=True,
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--styles", default="starry_night,great_wave,the_scream")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--networks", default="tiny,light")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vgg-weights", default="imagenet", help="imagenet, a local VGG16 state_dict, or random")
    p.add_argument("--style-balance", type=float, default=None, help="relative perceptual weights (default: off)")
    p.add_argument(
        "--temporal-balance", type=float, default=shipped_temporal_balance(), help="default: configs/video.yaml's"
    )
    p.add_argument("--calibration-steps", type=int, default=50)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--max-frames", type=int, default=24)
    p.add_argument("--max-side", type=int, default=320)
    p.add_argument("--cut-factor", type=float, default=10.0)
    p.add_argument("--strip", type=Path, default=None, help="folder for one PNG strip per cell")
    p.add_argument("--device", type=torch.device, default=torch.device("cpu"), help="cpu, cuda, cuda:1...")
    p.add_argument(
        "--extra-length", default=None, metavar="STYLE:STEPS", help="one style again at a second training length"
    )
    p.add_argument(
        "--random-cells", type=int, default=0, help="repeat the first N main cells with a random-feature loss net"
    )
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    return p.parse_args(argv)


def plan_cells(args: argparse.Namespace) -> dict[str, list[dict]]:
    """The main grid (styles x seeds x networks at ``--steps``), the extra training length and the random-feature
    repeats, each cell as ``{style, seed, network, steps, vgg_weights}``."""
    main_cells = [
        {"style": style, "seed": int(seed), "network": network, "steps": args.steps, "vgg_weights": args.vgg_weights}
        for network in args.networks.split(",")
        for style in args.styles.split(",")
        for seed in args.seeds.split(",")
    ]
    extra = []
    if args.extra_length:
        style, steps = args.extra_length.split(":")
        extra = [c | {"steps": int(steps)} for c in main_cells if c["style"] == style]
    random = [c | {"vgg_weights": "random"} for c in main_cells[: args.random_cells]]
    return {"cells": main_cells, "extra_length_cells": extra, "random_feature_cells": random}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    stills = load_stills(args.data, args.image_size)
    clip = Clip(args.clip, args.max_frames, args.max_side, args.cut_factor)
    print(
        f"loss net {args.vgg_weights}; {args.steps} steps, {args.image_size}px, batch {args.batch_size}; clip "
        f"{args.clip.name} {len(clip.frames)} frames, {clip.cuts} cut pair(s) left out; "
        f"device {device_label(args.device)}",
        flush=True,
    )
    measured: dict[str, list[dict]] = {}
    for group, cells in plan_cells(args).items():
        measured[group] = []
        for cell in cells:
            measured[group].append(run_cell(args, clip, stills, cell))
            print_cell(measured[group][-1])
    result = summary(measured["cells"])
    print(json.dumps(result))
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": device_label(args.device),
        "cuts_left_out": clip.cuts,
        "summary": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload | measured, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
