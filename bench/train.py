"""Training throughput benchmark: images/s and peak memory of one optimisation step of StyleTransferModule.

Usage::

    python -m bench.train                      # CPU: johnson + light, batch 4, fp32, temporal off/on (~2-4 min here)
    python -m bench.train --device cuda        # GPU: batch 4/8/16 x fp32/bf16/bf16+channels_last, temporal off/on,
                                               # + compile (johnson, batch 16); about 5 minutes on one H100
    python -m bench.train --device cpu --full  # every combination on the CPU (slow)

What is timed: ``module.loss_terms(batch)`` (transformer net forward, VGG loss-network forward over outputs and
inputs, content/style/TV and, when on, synthetic motion + temporal loss), ``backward`` and the Adam step, on
random 256x256 content already on the device. A direct loop rather than a ``Trainer``: it measures exactly the
model/loss work that the module does at every step; Lightning's own per-step cost (logging, progress bar, a few ms)
and data loading (a separate concern, overlapped by DataLoader workers in real runs) would only add noise, and a
Trainer would re-run set-up for each of dozens of configurations. With the temporal loss on, each still image is
stylized twice (two frames), so images/s counts still images per second.

The VGG16 loss network has random weights by default (no downloads on benchmark machines): the FLOPs and memory
are identical to the ImageNet weights, so timings are too; pass ``--vgg-weights imagenet`` or a path otherwise.
Writes ``bench/results/train-<device>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.environment import environment

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+cl": ("bf16", True, False),
    "bf16+cl+compile": ("bf16", True, True),
    "fp32+cl": ("fp32", True, False),
}


def _style_image(folder: Path) -> Path:
    from PIL import Image

    from inference.io.image_reader import resize_array

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = folder / "bench_style.png"
    Image.fromarray(resize_array(small, (512, 512))).save(path)
    return path


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Process-wide high-water mark (Linux: KiB); monotonic over the run, so only the first rows are exact.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(
    style: Path,
    device: torch.device,
    network: str,
    batch: int,
    variant: str,
    temporal: bool,
    size: int,
    steps: int,
    warmup: int,
    vgg_weights: str,
) -> dict:
    """Time ``steps`` optimisation steps after ``warmup`` ones; returns one result row."""
    from styletrain.module import StyleTransferModule
    from styletrain.module_config import TemporalConfig

    precision, channels_last, compile_net = VARIANTS[variant]
    row = {"network": network, "batch": batch, "variant": variant, "temporal": temporal, "size": size}
    torch.manual_seed(0)
    module = StyleTransferModule(
        style=str(style),
        network=network,
        vgg_weights=vgg_weights,
        temporal=TemporalConfig(weight=1e4 if temporal else 0.0),
        channels_last=channels_last,
        compile=compile_net,
    ).to(device)
    module.train()
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-3)
    batch_data = {"content": torch.rand(batch, 3, size, size, device=device)}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> float:
        with autocast:
            terms = module.loss_terms(batch_data)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        return terms["total"].detach()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    row["warmup_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(device)
    elapsed = time.perf_counter() - start
    row.update(
        images_per_sec=round(batch * steps / elapsed, 2),
        step_ms=round(1000 * elapsed / steps, 1),
        peak_memory_mb=round(_peak_memory_mb(device), 1),
        finite=bool(torch.isfinite(loss).item()),
    )
    return row


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--networks", nargs="+", default=["johnson", "light"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="default: 4 on CPU, 4 8 16 on GPU")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    parser.add_argument("--temporal", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 2 CPU, 20 GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 1 CPU, 5 GPU)")
    parser.add_argument("--vgg-weights", default="random", help="random (same FLOPs), imagenet or a path")
    parser.add_argument("--full", action="store_true", help="every batch size and variant, compile everywhere")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/train-<device>.json)")
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace, device: torch.device) -> dict:
    """Batch sizes, variants, timed and warm-up steps for ``device`` (the defaults differ between CPU and GPU)."""
    gpu = device.type == "cuda"
    return {
        "batches": args.batch_sizes or ([4, 8, 16] if gpu or args.full else [4]),
        "variants": args.variants
        or (list(VARIANTS) if args.full else (["fp32", "bf16", "bf16+cl", "bf16+cl+compile"] if gpu else ["fp32"])),
        "steps": args.steps or (20 if gpu else 2),
        "warmup": args.warmup or (5 if gpu else 1),
    }


def _run_rows(args: argparse.Namespace, device: torch.device, plan: dict) -> list[dict]:
    """One result row per configuration (an OOM or a compiler failure is a row with ``error``)."""
    batches, rows = plan["batches"], []
    with tempfile.TemporaryDirectory() as tmp:
        style = _style_image(Path(tmp))
        configs = itertools.product(args.networks, batches, plan["variants"], args.temporal)
        for network, batch, variant, temporal in configs:
            if variant.endswith("compile") and not args.full and (batch != max(batches) or network != args.networks[0]):
                continue  # compilation costs ~1 min per shape: first network, largest batch only, unless --full
            try:
                row = bench_one(
                    style, device, network, batch, variant, temporal == "on", args.size, plan["steps"],
                    plan["warmup"] + (5 if variant.endswith("compile") else 0), args.vgg_weights,
                )  # fmt: skip
            except Exception as exc:  # an OOM or a compiler failure is a result too
                row = {"network": network, "batch": batch, "variant": variant, "temporal": temporal == "on",
                       "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}  # fmt: skip
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            _print_row(row)
    return rows


def _write_result(args: argparse.Namespace, device: torch.device, plan: dict, rows: list[dict]) -> dict:
    gpu = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    result = {
        "benchmark": "train",
        **environment(str(device)),
        "vgg": "vgg16",
        "vgg_weights": args.vgg_weights,
        "note": "images/s = still images per second; temporal=on stylizes two frames per image. "
        "peak_memory_mb: CUDA max allocated per row, or process max RSS on CPU (monotonic).",
        "steps": plan["steps"],
        "warmup": plan["warmup"],
        "results": rows,
    }
    if not gpu:
        result["gpu"] = "not measured (no CUDA device in this run): python -m bench.train --device cuda"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"train-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{name} ({device}), torch {torch.__version__}, VGG16 weights: {args.vgg_weights}\nwrote {out}")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = _parse(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    plan = _plan(args, device)
    logging.disable(logging.WARNING)  # the loud random-VGG warning is expected here
    warnings.filterwarnings("ignore")
    rows = _run_rows(args, device, plan)
    return _write_result(args, device, plan, rows)


_HEADER = False


def _print_row(row: dict) -> None:
    global _HEADER
    if not _HEADER:
        print(f"{'network':8} {'batch':>5} {'variant':16} {'temporal':8} {'img/s':>8} {'step ms':>9} {'peak MB':>9}")
        _HEADER = True
    temporal = "on" if row["temporal"] else "off"
    if "error" in row:
        print(f"{row['network']:8} {row['batch']:>5} {row['variant']:16} {temporal:8} {row['error']}")
    else:
        print(
            f"{row['network']:8} {row['batch']:>5} {row['variant']:16} {temporal:8} "
            f"{row['images_per_sec']:>8.2f} {row['step_ms']:>9.1f} {row['peak_memory_mb']:>9.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
