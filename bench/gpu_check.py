"""The device check: one prepared command for a short GPU window.

Usage (from the repository root)::

    python -m bench.gpu_check                   # everything below in at most 8 minutes on one H100-class GPU
    python -m bench.gpu_check --budget 300      # a shorter window: sections that do not fit are "not measured"

Without CUDA it prints one line and exits with status 1 at once. With CUDA, in order, each section within its share
of ``--budget`` seconds (a section that runs out stops and says so):

1. the GPU tests (``pytest -m gpu``);
2. model only: johnson, light, identity x 360p, 1080p, 4K x fp32, fp16, bf16 (bf16 only where native), frames/s;
3. end to end: identity, light, johnson at 360p and 1080p through ``stylize_file`` with the stage table, plus the
   encoders alone on the same frames (libx264 at the same preset, and the default encoder);
4. training: johnson at 256 px, bf16-mixed, with and without compile, temporal loss off and on, images/s;
5. a batch over every visible GPU (``stylize-video a.mp4 b.mp4 ... --devices cuda``).

Writes ``bench/results/gpu-check-<gpu>.json`` (machine, every figure, the stage tables, the verdicts) and prints
one summary table with every GPU target met or not (:mod:`bench.gpu_targets`). Exit status 0 when the GPU tests
passed and every target was met, else 1. Figures are medians of three timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.gpu_targets import all_met, evaluate, summary

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"360p": (360, 640), "1080p": (1080, 1920), "4K": (2160, 3840)}
MODEL_NETWORKS = ("johnson", "light", "identity")
DEVICE = "cuda"  # "cpu" only to smoke-test this script without a GPU (--device cpu)
# Shares of the budget per section, in order; what a section leaves unused goes to the next ones.
SHARES = {"gpu_tests": 0.30, "model_only": 0.20, "end_to_end": 0.25, "training": 0.17, "multi_gpu": 0.08}


class Budget:
    """Wall-clock accounting: a section may run until its deadline; :meth:`left` is what remains of it."""

    def __init__(self, seconds: float) -> None:
        self.start, self.total, self.deadline = time.monotonic(), float(seconds), time.monotonic()

    def open(self, share: float) -> None:
        remaining_total = self.total - (time.monotonic() - self.start)
        self.deadline = time.monotonic() + max(0.0, min(remaining_total, self.total * share + self.carry()))

    def carry(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def left(self) -> float:
        return self.deadline - time.monotonic()


def timed_median(run: Callable[[], float], repeats: int = 3) -> dict[str, Any]:
    """One warm-up call, then ``repeats`` timed ones: ``{"median", "min", "max", "runs"}`` of what ``run`` returns."""
    run()
    values = [run() for _ in range(repeats)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def run_gpu_tests(budget: Budget, results: dict[str, Any], _tmp: Path) -> None:
    """``pytest -m gpu`` in a subprocess, within the section's time."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(10.0, budget.left()))
        out, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out, code = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
    counts = {
        k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", out.splitlines()[-1] if out else "")
    }
    failures = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    results["gpu_tests"] = {"exit": code, "seconds": round(time.perf_counter() - t0, 1), **counts, "failures": failures}


def model_only(budget: Budget, results: dict[str, Any], _tmp: Path) -> None:
    """Frames/s of each network x size x precision, model only, through the Stylizer's ``run_network``."""
    import torch

    from bench.inference import measure_model_fps
    from inference.engine.index_limit import PeakTensor
    from inference.engine.precision import bf16_native
    from inference.model.networks import build_network

    device = torch.device(DEVICE)
    precisions = ["fp32"] if device.type == "cpu" else ["fp32", "fp16"] + (["bf16"] if bf16_native(device) else [])
    rows = results.setdefault("model_only", [])
    for name in MODEL_NETWORKS:
        net = build_network(name)
        for size, (h, w) in SIZES.items():
            batch = min(8, PeakTensor(net).max_batch(h, w))
            for precision in precisions:
                if budget.left() < 2:
                    rows.append({"network": name, "size": size, "precision": precision, "status": "not run: time"})
                    continue
                row = measure_model_fps(net, h, w, batch, device, precision, backend="torch", min_time=0.2, min_iters=5)
                rows.append({"network": name, "size": size, **{k: row.get(k) for k in ("precision", "batch", "fps",
                             "fps_min", "fps_max", "peak_mem_mb", "status")}})  # fmt: skip
    johnson = [r for r in rows if (r["network"], r["size"], r["precision"]) == ("johnson", "1080p", "fp16")]
    if johnson and johnson[0].get("fps"):
        results["figures"]["johnson_fp16_1080p_model_fps"] = johnson[0]["fps"]


def make_clip(path: Path, frames: int = 180, size: tuple[int, int] = (1080, 1920)) -> Path:
    """A textured 1080p pan (smooth noise at several scales, 4 px right and 2 px down per frame), libx264."""
    import av
    import numpy as np
    import torch
    import torch.nn.functional as F

    h, w = size
    gen = torch.Generator().manual_seed(0)
    canvas = sum(
        F.interpolate(torch.rand(1, 3, cells, cells * 2, generator=gen), size=(h + 2 * frames, w + 4 * frames),
                      mode="bicubic", align_corners=False) * amp
        for cells, amp in ((4, 0.5), (16, 0.3), (64, 0.2), (256, 0.1))
    )  # fmt: skip
    canvas = (canvas[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for t in range(frames):
            rgb = np.ascontiguousarray(canvas[2 * t : 2 * t + h, 4 * t : 4 * t + w])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return path


def encoder_alone_fps(clip: Path, codec: str | None, preset: str, size: tuple[int, int], tmp: Path) -> float:
    """Encoding alone: the clip's I420 planes decoded (and resized) beforehand, then only encoded, with the options
    ``stylize_file`` gives the encoder (no colour conversion counted)."""
    import av

    from inference.io.encoders import resolve_encoder
    from inference.io.readers import open_source

    source = open_source(clip, size=size, even=True, planes=True)
    fmt = "yuv420p" if source.info.yuv is not None else "rgb24"  # planes whenever the stream allows
    frames = [f.array for f in source.frames()]
    source.close()

    encoder = resolve_encoder(codec, ".mp4", 18, preset, "yuv420p")
    t0 = time.perf_counter()
    with av.open(str(tmp / f"enc-{encoder.name}.mp4"), "w") as out:
        stream = out.add_stream(encoder.name, rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if encoder.x26x:
            stream.codec_context.thread_type = "FRAME"
        stream.options = dict(encoder.options)
        for planes in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format=fmt)))
        out.mux(stream.encode())
    return len(frames) / (time.perf_counter() - t0)


E2E_ROWS = [  # network, size, precision, codec (None: the default, NVENC where it opens), preset
    ("identity", "360p", "auto", None, "medium"),
    ("identity", "1080p", "auto", "libx264", "medium"),
    ("light", "360p", "auto", None, "medium"),
    ("light", "1080p", "auto", None, "medium"),
    ("johnson", "360p", "auto", None, "veryfast"),
    ("johnson", "1080p", "fp16", None, "medium"),
]


def end_to_end(budget: Budget, results: dict[str, Any], tmp: Path) -> None:
    """``stylize_file`` frames/s with the stage table for each row of :data:`E2E_ROWS`, and the encoders alone."""
    from inference.app.convert import stylize_file
    from inference.engine.options import RuntimeOptions
    from inference.engine.stylizer import Stylizer
    from inference.io.encoders import resolve_encoder
    from inference.model.networks import build_network

    clip = make_clip(tmp / "clip-1080p.mp4", size=SIZES["1080p"])
    rows, figures = results.setdefault("end_to_end", []), results["figures"]
    for name, size, precision, codec, preset in E2E_ROWS:
        if budget.left() < 10:
            rows.append({"network": name, "size": size, "status": "not run: time"})
            continue
        st = Stylizer(
            build_network(name), RuntimeOptions(device=DEVICE, precision=precision if DEVICE == "cuda" else "fp32")
        )
        wh = SIZES[size][::-1]
        last = {}

        def run(st=st, wh=wh, codec=codec, preset=preset, last=last) -> float:
            res = stylize_file(st, clip, tmp / "out.mp4", size=wh, codec=codec, preset=preset, overwrite=True,
                               audio=False, stats=True)  # fmt: skip
            last["table"], last["path"] = res.clock.table(res.seconds), res.path
            return res.fps

        fps = timed_median(run)
        encoder = resolve_encoder(codec, ".mp4", 18, preset, "yuv420p").name
        rows.append({"network": name, "size": size, "precision": st.precision_report.chosen, "encoder": encoder,
                     "preset": preset, "fps": fps, **last})  # fmt: skip
    for row in rows:
        key = {("identity", "1080p"): "identity_1080p_fps", ("johnson", "360p"): "johnson_360p_veryfast_fps",
               ("johnson", "1080p"): "johnson_fp16_1080p_fps"}.get((row["network"], row["size"]))  # fmt: skip
        if key and "fps" in row:
            figures[key] = row["fps"]["median"]
    if budget.left() > 5:
        wh = SIZES["1080p"][::-1]
        alone = {"libx264": encoder_alone_fps(clip, "libx264", "medium", wh, tmp)}
        alone["default"] = encoder_alone_fps(clip, None, "medium", wh, tmp)
        results["encoders_alone_1080p"] = alone
        figures["libx264_1080p_fps"], figures["encoder_1080p_fps"] = alone["libx264"], alone["default"]


def training(budget: Budget, results: dict[str, Any], tmp: Path) -> None:
    """Training images/s of johnson at 256 px, bf16-mixed, compile off/on x temporal loss off/on (random VGG)."""
    import torch

    from bench.train import VARIANTS, _style_image, bench_one

    VARIANTS.setdefault("bf16+compile", ("bf16", False, True))
    style, rows = _style_image(tmp), results.setdefault("training", [])
    for variant in ("bf16", "bf16+compile"):
        for temporal in (False, True):
            if budget.left() < 15:
                rows.append({"variant": variant, "temporal": temporal, "status": "not run: time"})
                continue
            warmup = 8 if "compile" in variant else 3
            rows.append(bench_one(style, torch.device(DEVICE), "johnson", 16, variant, temporal, 256, 20, warmup,
                                  "random"))  # fmt: skip
    best = [r["images_per_sec"] for r in rows if not r["temporal"] and "images_per_sec" in r]
    if best:
        results["figures"]["train_johnson_bf16_ips"] = max(best)


def multi_gpu(budget: Budget, results: dict[str, Any], tmp: Path) -> None:
    """A batch of two 360p files per visible GPU through ``stylize-video --devices cuda``; which GPUs ran files."""
    import contextlib
    import io

    import torch

    from inference.app.cli import main as cli_main
    from inference.model.artifact import save_artifact
    from inference.model.networks import build_network

    clip = make_clip(tmp / "small.mp4", frames=60, size=(360, 640))
    inputs = []
    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 1
    for i in range(2 * gpus):
        os.link(clip, tmp / f"in{i}.mp4")
        inputs.append(str(tmp / f"in{i}.mp4"))
    model = save_artifact(tmp / "light.safetensors", build_network("light"), style_name="s", style_sha256="0" * 64,
                          config={}, temporal=False)  # fmt: skip
    err, t0 = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = cli_main([*inputs, "-m", str(model), "-o", str(tmp / "outs"), "--devices", DEVICE])
    used = sorted(set(re.findall(r" on (cuda:\d+|cpu)", err.getvalue())))
    written = len(list((tmp / "outs").glob("*.mp4"))) if (tmp / "outs").is_dir() else 0
    seconds = round(time.perf_counter() - t0, 1)
    results["multi_gpu"] = {"gpus": gpus, "files": len(inputs), "written": written,
                            "exit": code, "seconds": seconds, "devices_used": used}  # fmt: skip


SECTIONS = {"gpu_tests": run_gpu_tests, "model_only": model_only, "end_to_end": end_to_end, "training": training,
            "multi_gpu": multi_gpu}  # fmt: skip


def machine() -> dict[str, Any]:
    """The GPU(s), host cores and library versions the figures were measured on."""
    import av
    import torch

    cuda = DEVICE == "cuda"
    return {
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
        "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        "host_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pyav": av.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def cuda_present() -> bool:
    """Whether a CUDA device is usable; answers at once (before importing torch) on machines without NVIDIA's driver
    or with ``CUDA_VISIBLE_DEVICES`` empty."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1") or not os.path.exists("/dev/nvidiactl"):
        return False
    import torch

    return torch.cuda.is_available()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything (default 480: 8 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder of the JSON result")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: smoke-test this script only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the check (see the module docstring); returns the exit status."""
    global DEVICE
    args = parse_args(argv)
    DEVICE = args.device
    if DEVICE == "cuda" and not cuda_present():
        print("gpu_check: no CUDA device visible; nothing run, every GPU figure is not measured")
        return 1
    budget = Budget(args.budget)
    results: dict[str, Any] = {"machine": machine(), "budget_s": args.budget, "figures": {}, "errors": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections.split(","):
            budget.open(SHARES[name])
            t0 = time.perf_counter()
            try:
                SECTIONS[name](budget, results, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others' figures
                results["errors"][name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
    results["verdicts"] = [v.__dict__ | {"status": v.status} for v in evaluate(results["figures"])]
    slug = re.sub(r"[^a-z0-9]+", "-", results["machine"]["gpus"][0].lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-check-{slug}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(summary(results))
    for name, error in results["errors"].items():
        print(f"section {name} failed: {error}")
    print(f"written: {path} ({time.monotonic() - budget.start:.0f}s)")
    tests_ok = results.get("gpu_tests", {}).get("exit") == 0
    return 0 if tests_ok and all_met(evaluate(results["figures"])) and not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
