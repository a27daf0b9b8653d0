"""Sweep the temporal balance: stability (warping error) against the style kept (contrast, style loss).

Trains one network per ``--balances`` value (``--model.temporal.balance``; 0 is the per-frame model) on the same
content images, with the same seed, steps and style, then measures each on a real clip with
:func:`styletrain.evaluate.evaluate_models` (flow on the INPUT clip, DIS by default) and prints, against the
per-frame model, warping error, output contrast and style loss ratios. It picks the largest balance that keeps
contrast >= 0.8x and style loss <= 1.1x the per-frame model's. ``--feature-scale 10`` multiplies the loss network's
features by 10, to check that the chosen balance carries over to a loss net of another scale. The full results go to
``bench/results/temporal-sweep-<device>.json``.

Runs without W&B or Hugging Face ``datasets`` (a plain optimisation loop over the LightningModule's own loss terms,
no Trainer, no logger), so it works on a bare GPU machine::

    python -m bench.temporal_sweep --network johnson --steps 4000 --image-size 256 --balances 0,0.1,0.3,1,3 \\
        --vgg-weights /path/to/vgg16-397923af.pth
    python -m bench.temporal_sweep --network tiny --steps 300 --image-size 128 --vgg-weights random   # CPU check

Losses in the table: content/style from ``evaluate`` on the clip when real loss-net weights are given, else (and
always, as ``val_*``) the module's raw loss terms on fixed validation crops of the content images.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.environment import data_root, environment

SHARED = data_root()
DEFAULT_DATA = SHARED / "content"
DEFAULT_CLIP = SHARED / "videos" / "big_buck_bunny_pan_2s.mp4"
DEFAULT_STYLE = SHARED / "styles" / "great_wave.jpg"


def load_stills(folder: Path, image_size: int) -> list[torch.Tensor]:
    """Every image of ``folder`` (recursive) resized so its shorter side is ``image_size``: ``[3, H, W]`` in [0, 1]."""
    from inference.io.image_reader import read_image
    from inference.io.media import IMAGE_EXTENSIONS
    from styletrain.data.video_frames import resize_shorter

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        sys.exit(f"error: no images in {folder}")
    return [
        torch.from_numpy(np.array(resize_shorter(read_image(p), image_size))).permute(2, 0, 1).float() / 255
        for p in paths
    ]


def crop_batch(stills: list[torch.Tensor], size: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """A batch of random ``size`` crops of random stills (deterministic under ``gen``)."""
    out = []
    for i in torch.randint(0, len(stills), (batch,), generator=gen).tolist():
        img = stills[i]
        y = int(torch.randint(0, img.shape[1] - size + 1, (1,), generator=gen))
        x = int(torch.randint(0, img.shape[2] - size + 1, (1,), generator=gen))
        out.append(img[:, y : y + size, x : x + size])
    return torch.stack(out)


def center_crops(stills: list[torch.Tensor], size: int, n: int) -> torch.Tensor:
    crops = []
    for img in stills[:n]:
        y, x = (img.shape[1] - size) // 2, (img.shape[2] - size) // 2
        crops.append(img[:, y : y + size, x : x + size])
    return torch.stack(crops)


def _scale_features(module, scale: float) -> None:
    """Multiply every feature map of the module's loss network by ``scale`` (a loss net of another scale)."""
    loss_net = module.perceptual.loss_network
    forward = loss_net.forward
    loss_net.forward = lambda x: {k: scale * v for k, v in forward(x).items()}


def build_module(args, balance: float, device: torch.device):
    """The LightningModule of one sweep point (balance 0: the per-frame model), loss-net features scaled if asked."""
    from styletrain.module import StyleTransferModule
    from styletrain.module_config import LossConfig, TemporalConfig

    torch.manual_seed(args.seed)
    layers = {}
    if args.content_layers:
        layers["content_layers"] = tuple(args.content_layers.split(","))
    if args.style_layers:
        layers["style_layers"] = tuple(args.style_layers.split(","))
    temporal = TemporalConfig(balance=balance or None, calibration_steps=args.calibration_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.vgg_weights == "random" else "default")
        module = StyleTransferModule(
            style=str(args.style),
            network=args.network,
            vgg_weights=args.vgg_weights,
            loss=LossConfig(**layers),
            temporal=temporal,
            optimizer=functools.partial(torch.optim.Adam, lr=args.lr),  # recorded; train_one steps its own Adam
        ).to(device)
    if args.feature_scale != 1.0:
        _scale_features(module, args.feature_scale)
    return module


def train_one(args, balance: float, stills: list[torch.Tensor], device: torch.device, out_dir: Path) -> dict:
    from inference.model.artifact import save_artifact

    module = build_module(args, balance, device)
    module.train()
    optimizer = torch.optim.Adam(module.net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    amp = device.type == "cuda"
    start, last = time.perf_counter(), {}
    for step in range(args.steps):
        batch = {"content": crop_batch(stills, args.image_size, args.batch_size, gen).to(device, non_blocking=True)}
        # The motion's own generator: the crops (from ``gen``) are the same at every balance, 0 included.
        motion = module.motion_generator() if module.temporal_on else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            terms = module.loss_terms(batch, generator=motion)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps - 1:
            last = {k: float(v.detach()) for k, v in terms.items()}
            print(
                f"  balance {balance:g} step {step}: " + " ".join(f"{k} {v:.3g}" for k, v in last.items()), flush=True
            )
    train_s = time.perf_counter() - start
    module.eval()
    val = center_crops(stills, args.image_size, 8).to(device)
    with torch.no_grad():
        val_terms = module.loss_terms({"content": val})
    path = out_dir / f"{args.network}-b{balance:g}.safetensors"
    meta = module.artifact_metadata()
    save_artifact(
        path,
        module.net,
        style_name=meta["style_name"],
        style_sha256=meta["style_sha256"],
        config=meta["config"] | {"sweep": vars(args) | {"balance": balance}},
        temporal=balance > 0,
    )
    calibrated = meta["config"].get("temporal_calibration", {}).get("weight", 0.0)
    return {
        "balance": balance,
        "temporal_weight": calibrated,
        "artifact": str(path),
        "train_seconds": train_s,
        "final_train_terms": last,
        "val_content": float(val_terms["content"]),
        "val_style": float(val_terms["style"]),
    }


def device_label(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{platform.machine()}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="light")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--balances", default="0,0.03,0.1,0.3,1,3", help="comma-separated temporal balances (0: per-frame)")
    p.add_argument("--calibration-steps", type=int, default=50, help="steps that calibrate the temporal weight")
    p.add_argument("--feature-scale", type=float, default=1.0, help="multiply the loss net's features by this")
    p.add_argument("--vgg-weights", default="imagenet", help="imagenet, a local VGG16 state_dict, or random")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of content images")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="evaluation video or frame folder")
    p.add_argument("--style", type=Path, default=DEFAULT_STYLE)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=24)
    p.add_argument("--max-side", type=int, default=640)
    p.add_argument("--flow-method", default="dis")
    p.add_argument("--style-layers", default=None, help="e.g. relu1_2,relu2_2 (default: the module's)")
    p.add_argument("--content-layers", default=None, help="e.g. relu2_2 (default: the module's)")
    p.add_argument("--keep-artifacts", action="store_true", help="keep the artifacts beside the JSON")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/temporal-sweep-<dev>)")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    for path, what in ((args.data, "--data"), (args.clip, "--clip"), (args.style, "--style")):
        if not path.exists():
            sys.exit(f"error: {what} {path} does not exist")
    return args


def _train_and_evaluate(args: argparse.Namespace, device: torch.device, art_dir: Path) -> list[dict]:
    """Train one network per temporal balance (0 always included), evaluate all on the clip; one row per balance."""
    from inference.core.errors import UserError
    from styletrain.evaluate import EvalOptions, evaluate_models

    balances = sorted({0.0, *(float(b) for b in args.balances.split(","))})
    stills = load_stills(args.data, args.image_size)
    print(
        f"{len(stills)} content images, {args.network}, {args.steps} steps, batch {args.batch_size}, "
        f"{args.image_size}px, vgg {args.vgg_weights} (features x{args.feature_scale:g}), "
        f"device {device_label(device)}",
        flush=True,
    )
    try:
        runs = [train_one(args, b, stills, device, art_dir) for b in balances]
        options = EvalOptions(
            max_frames=args.max_frames,
            max_side=args.max_side,
            device=str(device),
            vgg_weights=args.vgg_weights,
            style=str(args.style),
            flow_method=args.flow_method,
        )
        evals = evaluate_models([r["artifact"] for r in runs], str(args.clip), options)
    except UserError as exc:
        sys.exit(f"error: {exc}")
    rows = [r | {k: v for k, v in e.items() if k != "model"} for r, e in zip(runs, evals, strict=True)]
    base = rows[0]  # balance 0: the per-frame model
    for row in rows:
        row["warp_vs_per_frame"] = row["warping_error"] / base["warping_error"]
        row["contrast_vs_per_frame"] = row["contrast"] / base["contrast"]
        row["style_vs_per_frame"] = row["val_style"] / base["val_style"]
    return rows


def choose_balance(rows: list[dict], min_contrast: float = 0.8, max_style: float = 1.1) -> dict | None:
    """The row of the largest balance whose contrast and style loss stay within bounds of the per-frame model."""
    kept = [
        r
        for r in rows
        if r["balance"] > 0 and r["contrast_vs_per_frame"] >= min_contrast and r["style_vs_per_frame"] <= max_style
    ]
    return max(kept, key=lambda r: r["balance"], default=None)


def _print_table(args: argparse.Namespace, rows: list[dict]) -> dict | None:
    print(
        f"\nclip {args.clip} ({rows[0]['frames']} frames, {rows[0]['size'][0]}x{rows[0]['size'][1]}), "
        f"flow {args.flow_method}; loss net {args.vgg_weights} VGG16, features x{args.feature_scale:g}; "
        "ratios against the per-frame model (balance 0)"
    )
    print(
        f"{'balance':>8} {'weight':>10} {'warp err':>10} {'warp ÷pf':>9} {'contrast':>9} {'contr ÷pf':>9} "
        f"{'style ÷pf':>9} {'colour':>7} {'÷floor':>7}"
    )
    for r in rows:
        print(
            f"{r['balance']:>8g} {r['temporal_weight']:>10.3g} {r['warping_error']:>10.3e} "
            f"{r['warp_vs_per_frame']:>9.3f} {r['contrast']:>9.4f} {r['contrast_vs_per_frame']:>9.3f} "
            f"{r['style_vs_per_frame']:>9.3f} {r['colourfulness']:>7.4f} {r['ratio_to_input']:>7.2f}"
        )
    chosen = choose_balance(rows)
    if chosen is None:
        print("no balance keeps contrast >= 0.8x and style loss <= 1.1x of the per-frame model")
    else:
        print(
            f"chosen: balance {chosen['balance']:g} (largest with contrast >= 0.8x and style loss <= 1.1x the "
            f"per-frame model's): warping error {chosen['warp_vs_per_frame']:.3f}x, "
            f"contrast {chosen['contrast_vs_per_frame']:.3f}x"
        )
    return chosen


def main(argv: list[str] | None = None) -> None:
    import tempfile

    args = _parse(argv)
    device = torch.device(args.device)
    label = device_label(device)
    results_dir = Path(__file__).resolve().parent / "results"
    out = args.out or results_dir / f"temporal-sweep-{label}.json"
    art_dir = results_dir / f"temporal-sweep-{label}-artifacts" if args.keep_artifacts else Path(tempfile.mkdtemp())
    rows = _train_and_evaluate(args, device, art_dir)
    chosen = _print_table(args, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {**environment(str(device)), "args": {k: str(v) for k, v in vars(args).items()}, "device_label": label}
    payload["chosen_balance"] = None if chosen is None else chosen["balance"]
    out.write_text(json.dumps(payload | {"rows": rows}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
