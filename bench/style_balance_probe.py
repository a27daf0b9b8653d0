"""Per-frame training at absolute weights against relative ones (``--model.loss.style_balance``): does the model paint
and keep the content? One short run per value, the same seed and crops; ``content_kept`` and contrast on held-out
photos.

    python -m bench.build_hed_vgg16
    python -m bench.style_balance_probe --vgg-weights artifacts/hed_vgg16.pth --balances abs,1,30 --steps 60 \\
        --image-size 64 --out bench/results/style-balance-probe-hed-cpu.json --strip outputs/style_balance

The last 4 content images are held out for measuring; ``--strip DIR`` writes input / output rows per value.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.temporal_sweep import DEFAULT_DATA, SHARED, crop_batch, load_stills


def run(args: argparse.Namespace, balance: float | None, stills: list[torch.Tensor], held_out: torch.Tensor) -> dict:
    """Train one per-frame model (absolute weights when ``balance`` is None) and measure it on ``held_out``."""
    from styletrain.module import StyleTransferModule
    from styletrain.module_config import LossConfig
    from styletrain.output_stats import content_kept, contrast

    torch.manual_seed(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.vgg_weights == "random" else "default")
        module = StyleTransferModule(
            style=str(args.style), style_size=args.style_size, network=args.network, vgg_weights=args.vgg_weights,
            loss=LossConfig(style_balance=balance),
        ).train()  # fmt: skip
    optimizer = torch.optim.Adam(module.net.parameters(), lr=args.lr)
    gen, start = torch.Generator().manual_seed(args.seed), time.perf_counter()
    for _ in range(args.steps):
        terms = module.loss_terms({"content": crop_batch(stills, args.image_size, 4, gen)})
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    weights = module._weights(terms)
    ratio = float(weights["style"] * terms["style"].detach()) / float(weights["content"] * terms["content"].detach())
    with torch.no_grad():
        out = module.eval()(held_out).clamp(0, 1)
    if args.strip is not None:
        from PIL import Image

        rows = torch.cat([torch.cat(list(held_out), 2), torch.cat(list(out), 2)], 1)
        args.strip.mkdir(parents=True, exist_ok=True)
        image = (rows.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(image).save(args.strip / f"{args.network}-{args.image_size}-{balance}.png")
    return {
        "style_balance": balance,
        "content_kept": float(content_kept(held_out, out)),
        "contrast": float(contrast(out)),
        "weighted_style_over_content_at_end": ratio,
        "train_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vgg-weights", default="imagenet")
    p.add_argument("--balances", default="abs,1,30", help="comma-separated; abs = absolute default weights")
    p.add_argument("--network", default="tiny")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--style", type=Path, default=SHARED / "styles" / "starry_night.jpg")
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--strip", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    stills = load_stills(args.data, args.image_size)
    held_out = torch.stack([torch.nn.functional.interpolate(s[None], size=(args.image_size,) * 2, mode="area")[0]
                            for s in stills[-4:]])  # fmt: skip
    rows = []
    for value in args.balances.split(","):
        rows.append(run(args, None if value == "abs" else float(value), stills[:-4], held_out))
        print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
