"""The device check: one prepared command for a short GPU window, that returns whatever it measured.

Usage (from the repository root; on the device machine through ``python3 -m bench.device_kit run --out $OUT``)::

    python -m bench.gpu_check --out DIR                  # everything below in at most 8 minutes on one GPU
    python -m bench.gpu_check --budget 300 --out DIR     # a shorter window: rows that do not fit are "not run: time"
    python -m bench.gpu_check --dry-run --out DIR        # every section on the CPU at tiny sizes (under 2 minutes)

Without CUDA (and without ``--dry-run``) it prints one line and exits with status 1 at once. With CUDA, in order, each
section within its share of ``--budget`` seconds (a row that runs past its section's deadline is stopped there):

1. model only: johnson, light, identity x 360p, 1080p, 4K x fp32, fp16, bf16 (bf16 only where native), frames/s;
2. end to end: identity, light, johnson through the artifact loader ``stylize-video`` uses (cuDNN autotuning on) and
   ``stylize_file``, at the default consistency (0.8, RAFT with random ``raft_small`` weights: its timing does not
   depend on them) and at 0; 360p rows from a 360p clip; plus the encoders alone at 1080p;
3. consistency: the stage's cost per 1080p frame (0.8 against 0) for light, johnson and the shipped artifact
   (``docs/models/``), frames in memory, with the flow and stage busy times;
4. training: johnson at 256 px, bf16-mixed, with and without compile, temporal loss off and on, images/s;
5. a batch over every visible GPU (``stylize-video a.mp4 b.mp4 ... --devices cuda``), only where there are two;
6. last, the GPU tests (``pytest -m gpu``) with their own timeout (``--tests-timeout``), in their own process group,
   killed as a whole when it passes.

End-to-end figures are steady state: each row times the clip's first :attr:`Plan.short_seconds` and the whole clip,
and reports the frames between them over the time between them (start-up, cuDNN autotuning and the encoder's
opening excluded), beside the whole-file rate. Writes ``gpu-check-<gpu>.json`` into ``--out`` after every row
(machine, every figure, the stage tables, errors, the verdicts at the end) and prints one summary table with every GPU
target met or not (:mod:`bench.gpu_targets`). A section that fails is recorded under ``errors`` and the next one
runs. Exit status 0 when the GPU tests passed and every target was met, else 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.check_guard import Budget, Report, RowTimeout, guarded, run_group
from bench.gpu_targets import all_met, evaluate, summary

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ARTIFACT = ROOT / "docs" / "models" / "starry_night+great_wave-hed-light.safetensors"
#: The consistency ``stylize-video`` runs at by default (the API's default is 0).
DEFAULT_CONSISTENCY = 0.8
# Shares of the budget (after the GPU tests' own timeout) per section, in order; what a section leaves unused goes to
# the next ones.
SHARES = {"model_only": 0.25, "end_to_end": 0.35, "consistency": 0.15, "training": 0.17, "multi_gpu": 0.08}

__all__ = ["Budget", "main"]  # Budget: re-exported for the tests


@dataclass(frozen=True)
class Plan:
    """What the check measures: the full plan on a GPU, or :data:`DRY` on the CPU at tiny sizes."""

    device: str
    sizes: dict[str, tuple[int, int]]  # name -> (height, width)
    model_networks: tuple[str, ...]
    #: network, size, precision, codec (None: the default, NVENC where it opens), preset, consistency
    e2e_rows: tuple[tuple[str, str, str, str | None, str, float], ...]
    clip_frames: int  # frames of each end-to-end clip (30 frames/s)
    short_seconds: float  # the steady-state window starts after this much of the clip
    repeats: int  # timed repetitions of each row after a warm-up (fewer when the section's time runs out)
    consistency_networks: tuple[str, ...]  # plus the shipped artifact
    consistency_frames: int
    train: tuple[int, int, int, int, tuple[str, ...]]  # size, batch, steps, warmup, variants
    tests: tuple[str, ...]  # what pytest -m gpu collects


FULL = Plan(
    device="cuda",
    sizes={"360p": (360, 640), "1080p": (1080, 1920), "4K": (2160, 3840)},
    model_networks=("johnson", "light", "identity"),
    e2e_rows=(
        ("identity", "360p", "auto", None, "medium", 0.0),
        ("identity", "1080p", "auto", "libx264", "medium", 0.0),
        ("light", "360p", "auto", None, "medium", DEFAULT_CONSISTENCY),
        ("light", "1080p", "auto", None, "medium", DEFAULT_CONSISTENCY),
        ("light", "1080p", "auto", None, "medium", 0.0),
        ("johnson", "360p", "auto", None, "veryfast", 0.0),
        ("johnson", "360p", "auto", None, "veryfast", DEFAULT_CONSISTENCY),
        ("johnson", "1080p", "fp16", None, "medium", 0.0),
        ("johnson", "1080p", "fp16", None, "medium", DEFAULT_CONSISTENCY),
    ),
    clip_frames=180,
    short_seconds=1.0,
    repeats=3,
    consistency_networks=("light", "johnson"),
    consistency_frames=60,
    train=(256, 16, 20, 3, ("bf16", "bf16+compile")),
    tests=("tests",),
)
DRY = Plan(
    device="cpu",
    sizes={"360p": (48, 64), "1080p": (64, 96), "4K": (96, 128)},
    model_networks=("light", "identity"),
    e2e_rows=(
        ("identity", "1080p", "auto", "libx264", "ultrafast", 0.0),
        ("light", "360p", "auto", "libx264", "ultrafast", DEFAULT_CONSISTENCY),
    ),
    clip_frames=12,
    short_seconds=0.2,
    repeats=1,
    consistency_networks=("light",),
    consistency_frames=6,
    train=(64, 2, 1, 1, ("fp32",)),
    tests=("tests/test_device_flow.py",),
)


@dataclass
class Context:
    """What every section gets: the plan, the section's budget, the report and a scratch folder."""

    plan: Plan
    budget: Budget
    report: Report
    tmp: Path
    tests_timeout: float = 150.0
    _files: dict[str, Path] = dataclasses.field(default_factory=dict)

    def artifact(self, name: str) -> Path:
        """A random-weight artifact of network ``name`` (saved once)."""
        if name not in self._files:
            from inference.model.artifact import save_artifact
            from inference.model.networks import build_network

            self._files[name] = save_artifact(self.tmp / f"{name}.safetensors", build_network(name), style_name="s",
                                              style_sha256="0" * 64, config={}, temporal=False)  # fmt: skip
        return self._files[name]

    def raft_weights(self) -> Path | None:
        """A ``raft_small`` state dict with random weights (saved once), on CUDA; None on the CPU (DIS runs there)."""
        if self.plan.device != "cuda":
            return None
        if "raft" not in self._files:
            import torch
            from torchvision.models.optical_flow import raft_small

            torch.manual_seed(0)
            torch.save(raft_small(weights=None).state_dict(), self.tmp / "raft_small_random.pth")
            self._files["raft"] = self.tmp / "raft_small_random.pth"
        return self._files["raft"]

    def clip(self, size: str) -> Path:
        """A textured pan of :attr:`Plan.clip_frames` frames made at ``size`` (saved once)."""
        key = f"clip-{size}"
        if key not in self._files:
            self._files[key] = make_clip(self.tmp / f"{key}.mp4", self.plan.clip_frames, self.plan.sizes[size])
        return self._files[key]


def timed(run: Callable[[], float], ctx: Context) -> dict[str, Any]:
    """One warm-up call of ``run``, then up to :attr:`Plan.repeats` timed ones while the section's time allows:
    ``{"median", "min", "max", "runs"}`` of what ``run`` returns (inside :meth:`Budget.row`)."""
    with ctx.budget.row():
        t0 = time.perf_counter()
        run()
        values: list[float] = []
        for _ in range(ctx.plan.repeats):
            if values and ctx.budget.left() < 1.5 * (time.perf_counter() - t0) / (len(values) + 1):
                break  # the next repetition would not fit: keep what was measured
            values.append(run())
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def model_only(ctx: Context) -> None:
    """Frames/s of each network x size x precision, model only, through the Stylizer's ``run_network``."""
    import torch

    from bench.inference import measure_model_fps
    from inference.engine.index_limit import PeakTensor
    from inference.engine.precision import bf16_native
    from inference.model.networks import build_network

    device = torch.device(ctx.plan.device)
    precisions = ["fp32"] if device.type == "cpu" else ["fp32", "fp16"] + (["bf16"] if bf16_native(device) else [])
    for name in ctx.plan.model_networks:
        net = build_network(name)
        for size, (h, w) in ctx.plan.sizes.items():
            batch = min(8, PeakTensor(net).max_batch(h, w))
            for precision in precisions:
                row = {"network": name, "size": size, "precision": precision}
                try:
                    with ctx.budget.row():
                        got = measure_model_fps(net, h, w, batch, device, precision, backend="torch", min_time=0.2,
                                                min_iters=5)  # fmt: skip
                    row.update({k: got.get(k) for k in ("precision", "batch", "fps", "fps_min", "fps_max",
                                                        "peak_mem_mb", "status")})  # fmt: skip
                except RowTimeout:
                    row["status"] = "not run: time"
                ctx.report.add("model_only", row)
    key = ("johnson", "1080p", "fp16")
    johnson = [r for r in ctx.report["model_only"] if (r["network"], r["size"], r["precision"]) == key]
    if johnson and johnson[0].get("fps"):
        ctx.report["figures"]["johnson_fp16_1080p_model_fps"] = johnson[0]["fps"]


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


def _stylize_rate(ctx: Context, stylizer, clip: Path, codec: str | None, preset: str, last: dict) -> float:
    """Steady-state frames/s of ``stylize_file`` on ``clip``: the frames past :attr:`Plan.short_seconds` over the
    time they took (a run of the short part subtracted from a run of the whole); the whole run's rate, stage table
    and path go into ``last``."""
    from inference.app.convert import stylize_file

    def once(**trim: Any):
        return stylize_file(stylizer, clip, ctx.tmp / "out.mp4", codec=codec, preset=preset, overwrite=True,
                            audio=False, stats=True, **trim)  # fmt: skip

    short, whole = once(duration=ctx.plan.short_seconds), once()
    last.update(table=whole.clock.table(whole.seconds), path=whole.path, whole_file_fps=whole.fps,
                frames=whole.frames)  # fmt: skip
    if whole.frames <= short.frames or whole.seconds <= short.seconds:
        return whole.fps
    return (whole.frames - short.frames) / (whole.seconds - short.seconds)


def end_to_end(ctx: Context) -> None:
    """Steady-state ``stylize_file`` frames/s with the stage table for each row of :attr:`Plan.e2e_rows`, loaded as
    ``stylize-video`` loads an artifact (cuDNN autotuning on CUDA); then the encoders alone at 1080p."""
    from inference.app.jobs import load_stylizer
    from inference.engine.options import RuntimeOptions
    from inference.io.encoders import resolve_encoder

    figures, cuda = ctx.report["figures"], ctx.plan.device == "cuda"
    for name, size, precision, codec, preset, consistency in ctx.plan.e2e_rows:
        row: dict[str, Any] = {"network": name, "size": size, "consistency": consistency, "preset": preset}
        try:
            with ctx.budget.row():
                flow = ctx.raft_weights() if consistency else None
                options = RuntimeOptions(device=ctx.plan.device, precision=precision if cuda else "fp32",
                                         consistency=consistency, flow_weights=flow)  # fmt: skip
                stylizer = load_stylizer(str(ctx.artifact(name)), options)
                clip = ctx.clip(size)
            last: dict[str, Any] = {}
            row["fps"] = timed(
                lambda st=stylizer, c=clip, k=codec, p=preset, last=last: _stylize_rate(ctx, st, c, k, p, last), ctx
            )
            row.update(precision=stylizer.precision_report.chosen,
                       encoder=resolve_encoder(codec, ".mp4", 18, preset, "yuv420p").name, **last)  # fmt: skip
            if consistency and stylizer._flow is not None:  # noqa: SLF001 - which flow ran, for the reader
                row["flow"] = stylizer._flow.label  # noqa: SLF001
        except RowTimeout:
            row["status"] = "not run: time"
        ctx.report.add("end_to_end", row)
        key = {("identity", "1080p"): "identity_1080p_fps", ("johnson", "360p"): "johnson_360p_veryfast_fps",
               ("johnson", "1080p"): "johnson_fp16_1080p_fps"}.get((name, size))  # fmt: skip
        if key and "fps" in row:
            figures[key if not consistency else f"{key}_consistency"] = row["fps"]["median"]
    with ctx.budget.row():
        wh = ctx.plan.sizes["1080p"][::-1]
        alone = {"libx264": encoder_alone_fps(ctx.clip("1080p"), "libx264", "medium", wh, ctx.tmp)}
        alone["default"] = encoder_alone_fps(ctx.clip("1080p"), None, "medium", wh, ctx.tmp)
    ctx.report["encoders_alone_1080p"] = alone
    figures["libx264_1080p_fps"], figures["encoder_1080p_fps"] = alone["libx264"], alone["default"]
    ctx.report.save()


def _frames_of(clip: Path, count: int) -> list:
    """The first ``count`` frames of ``clip`` as ``uint8 [H,W,3]`` RGB arrays."""
    from inference.io.readers import open_source

    source = open_source(clip)
    try:
        return [f.array for _, f in zip(range(count), source.frames(), strict=False)]
    finally:
        source.close()


def consistency(ctx: Context) -> None:
    """The consistency stage's cost: ms per 1080p frame with the stage at its default against without it (frames in
    memory, so only the network, the flow and the stage are timed), for each network and the shipped artifact."""
    import torch

    from inference.app.jobs import load_stylizer
    from inference.core.stages import StageClock
    from inference.engine.options import RuntimeOptions

    frames = _frames_of(ctx.clip("1080p"), ctx.plan.consistency_frames)
    cuda = ctx.plan.device == "cuda"
    models = [(name, ctx.artifact(name)) for name in ctx.plan.consistency_networks]
    models.append(("shipped light", SHIPPED_ARTIFACT))
    for name, path in models:
        row: dict[str, Any] = {"network": name, "size": "1080p", "frames": len(frames)}
        try:
            with ctx.budget.row():
                options = RuntimeOptions(device=ctx.plan.device, precision="auto" if cuda else "fp32",
                                         flow_weights=ctx.raft_weights())  # fmt: skip
                stylizer = load_stylizer(str(path), options)
            for strength in (0.0, DEFAULT_CONSISTENCY):
                clock = StageClock()

                def run(st=stylizer, s=strength, clock=clock) -> float:
                    st.update(consistency=s)
                    t0 = time.perf_counter()
                    for _ in st.process(((f, None) for f in frames), clock=clock):
                        pass
                    if cuda:
                        torch.cuda.synchronize()
                    return 1000 * (time.perf_counter() - t0) / len(frames)

                row[f"ms_per_frame_{strength:g}"] = timed(run, ctx)["median"]
                if strength:
                    row["busy_s"] = {k: round(v, 3) for k, v in clock.busy.items()}
                    row["flow"] = stylizer._flow.label if stylizer._flow is not None else None  # noqa: SLF001
            row["ratio"] = row[f"ms_per_frame_{DEFAULT_CONSISTENCY:g}"] / row["ms_per_frame_0"]
        except RowTimeout:
            row["status"] = "not run: time"
        ctx.report.add("consistency", row)
        if "ratio" in row and name in ("light", "johnson"):
            ctx.report["figures"][f"consistency_{name}_1080p_ratio"] = row["ratio"]
    ctx.report.save()


def training(ctx: Context) -> None:
    """Training images/s of johnson, bf16-mixed, compile off/on x temporal loss off/on (random VGG)."""
    import torch

    from bench.train import VARIANTS, _style_image, bench_one

    VARIANTS.setdefault("bf16+compile", ("bf16", False, True))
    size, batch, steps, warmup, variants = ctx.plan.train
    style = _style_image(ctx.tmp)
    for variant in variants:
        for temporal in (False, True):
            row: dict[str, Any] = {"variant": variant, "temporal": temporal}
            try:
                with ctx.budget.row():
                    row = bench_one(style, torch.device(ctx.plan.device), "johnson", batch, variant, temporal, size,
                                    steps, warmup + (5 if "compile" in variant else 0), "random")  # fmt: skip
            except RowTimeout:
                row["status"] = "not run: time"
            ctx.report.add("training", row)
    best = [r["images_per_sec"] for r in ctx.report["training"] if not r["temporal"] and "images_per_sec" in r]
    if best and ctx.plan.device == "cuda":
        ctx.report["figures"]["train_johnson_bf16_ips"] = max(best)


def multi_gpu(ctx: Context) -> None:
    """A batch of two 360p files per visible GPU through ``stylize-video --devices cuda``; which GPUs ran files. Only
    where two or more GPUs are visible (one GPU says nothing a single run does not); the dry run uses the CPU."""
    import contextlib
    import io

    import torch

    from inference.app.cli import main as cli_main

    gpus = torch.cuda.device_count() if ctx.plan.device == "cuda" else 1
    if ctx.plan.device == "cuda" and gpus < 2:
        ctx.report["multi_gpu"] = {"gpus": gpus, "status": "not run: one GPU visible"}
        return
    clip, inputs = ctx.clip("360p"), []
    for i in range(2 * gpus):
        os.link(clip, ctx.tmp / f"in{i}.mp4")
        inputs.append(str(ctx.tmp / f"in{i}.mp4"))
    err, t0 = io.StringIO(), time.perf_counter()
    with ctx.budget.row(), contextlib.redirect_stderr(err):
        code = cli_main([*inputs, "-m", str(ctx.artifact("light")), "-o", str(ctx.tmp / "outs"), "--devices",
                         ctx.plan.device, "--consistency", "0"])  # fmt: skip
    used = sorted(set(re.findall(r" on (cuda:\d+|cpu)", err.getvalue())))
    written = len(list((ctx.tmp / "outs").glob("*.mp4"))) if (ctx.tmp / "outs").is_dir() else 0
    ctx.report["multi_gpu"] = {"gpus": gpus, "files": len(inputs), "written": written, "exit": code,
                               "seconds": round(time.perf_counter() - t0, 1), "devices_used": used}  # fmt: skip


def run_gpu_tests(ctx: Context) -> None:
    """``pytest -m gpu`` in its own process group, killed as a whole after ``--tests-timeout`` seconds."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *ctx.plan.tests]
    t0 = time.perf_counter()
    code, out = run_group(cmd, ROOT, ctx.tests_timeout, ctx.tmp / "pytest.log")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    failures = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    tail = out[-2000:] if code not in (0, 5) else ""  # 5: nothing collected (no GPU test selected)
    ctx.report["gpu_tests"] = {"exit": code, "seconds": round(time.perf_counter() - t0, 1), **counts,
                               "failures": failures[:50], "tail": tail}  # fmt: skip


#: In the order they run: the GPU tests last, with their own timeout.
SECTIONS = {"model_only": model_only, "end_to_end": end_to_end, "consistency": consistency, "training": training,
            "multi_gpu": multi_gpu, "gpu_tests": run_gpu_tests}  # fmt: skip


def machine(device: str) -> dict[str, Any]:
    """The GPU(s), host cores and library versions the figures were measured on."""
    import av
    import torch

    cuda = device == "cuda"
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
    parser.add_argument("--tests-timeout", type=float, default=150.0,
                        help="seconds for the GPU tests, run last, out of the budget (default 150)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder of the JSON result")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes (no GPU)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the check (see the module docstring); returns the exit status."""
    args = parse_args(argv)
    plan = DRY if args.dry_run else FULL
    names = args.sections.split(",")
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        print(f"gpu_check: unknown section {unknown[0]!r}; sections are {', '.join(SECTIONS)}")
        return 2
    if plan.device == "cuda" and not cuda_present():
        print("gpu_check: no CUDA device visible; nothing run, every GPU figure is not measured")
        return 1
    if plan.device == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True  # as stylize-video sets it (inference.app.jobs.load_stylizer)
    info = machine(plan.device)
    slug = re.sub(r"[^a-z0-9]+", "-", info["gpus"][0].lower()).strip("-")
    report = Report(args.out / f"gpu-check-{slug}.json", machine=info, budget_s=args.budget, dry_run=args.dry_run,
                    figures={}, errors={})  # fmt: skip
    report.save()
    tests_timeout = min(args.tests_timeout, 0.5 * args.budget) if "gpu_tests" in names else 0.0
    budget = Budget(args.budget - tests_timeout)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(plan, budget, report, Path(tmp), tests_timeout)
        for name in (n for n in SECTIONS if n in names):  # always in the documented order
            budget.open(SHARES.get(name, 0.0))
            guarded(name, lambda name=name: SECTIONS[name](ctx), report)
    report["verdicts"] = [v.__dict__ | {"status": v.status} for v in evaluate(report["figures"])]
    report.save()
    print(summary(report))
    for name, error in report["errors"].items():
        print(f"section {name} failed: {error}")
    print(f"written: {report.path} ({time.monotonic() - budget.start:.0f}s)")
    tests_ok = report.get("gpu_tests", {}).get("exit") == 0
    return 0 if tests_ok and all_met(evaluate(report["figures"])) and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
