"""The sections of ``python -m bench.gpu_check``, in the order they run (see its docstring): each takes the
:class:`~bench.gpu_plan.Context`, adds its rows to the report (saved after every row) and stops a row at its
section's deadline (:meth:`bench.check_guard.Budget.row`).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.check_guard import RowTimeout, run_group
from bench.gpu_plan import DEFAULT_CONSISTENCY, ROOT, SHIPPED_ARTIFACT, Context, encoder_alone_fps, timed


def model_only(ctx: Context) -> None:
    """Frames/s of each network x size x precision, model only, through the Stylizer's ``run_network``."""
    import torch

    from bench.runtime_speed import measure_model_fps
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
                        min_time, min_iters = ctx.plan.model_min
                        got = measure_model_fps(net, h, w, batch, device, precision, backend="torch",
                                                min_time=min_time, min_iters=min_iters)  # fmt: skip
                    row.update({k: got.get(k) for k in ("precision", "batch", "fps", "fps_min", "fps_max",
                                                        "peak_mem_mb", "status")})  # fmt: skip
                except RowTimeout:
                    row["status"] = "not run: time"
                ctx.report.add("model_only", row)
    key = ("johnson", "1080p", "fp16")
    johnson = [r for r in ctx.report["model_only"] if (r["network"], r["size"], r["precision"]) == key]
    if johnson and johnson[0].get("fps"):
        ctx.report["figures"]["johnson_fp16_1080p_model_fps"] = johnson[0]["fps"]


def _stylize_rate(ctx: Context, stylizer, clip: Path, codec: str | None, preset: str, last: dict) -> float:
    """Steady-state frames/s of ``stylize_file`` on ``clip``: the frames past :attr:`Plan.short_seconds` over the
    time they took (a run of the short part subtracted from a run of the whole); the whole run's rate, stage table
    and path go into ``last``."""
    from inference.app.convert import stylize_file

    def once(**trim: Any):
        return stylize_file(stylizer, clip, ctx.tmp / "out.mp4", codec=codec, preset=preset, overwrite=True,
                            audio=False, stats=True, **trim)  # fmt: skip

    short, whole = once(duration=ctx.plan.short_seconds), once()
    last.update(table=whole.clock.table(whole.seconds), frame_format=whole.frame_format, whole_file_fps=whole.fps,
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
    try:
        with ctx.budget.row():
            wh = ctx.plan.sizes["1080p"][::-1]
            alone = {"libx264": encoder_alone_fps(ctx.clip("1080p"), "libx264", "medium", wh, ctx.tmp)}
            alone["default"] = encoder_alone_fps(ctx.clip("1080p"), None, "medium", wh, ctx.tmp)
    except RowTimeout:
        ctx.report["encoders_alone_1080p"] = {"status": "not run: time"}
    else:
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
        for temporal in ctx.plan.temporal:
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
    try:
        with ctx.budget.row(), contextlib.redirect_stderr(err):
            code = cli_main([*inputs, "-m", str(ctx.artifact("light")), "-o", str(ctx.tmp / "outs"), "--devices",
                             ctx.plan.device, "--consistency", "0"])  # fmt: skip
    except RowTimeout:
        ctx.report["multi_gpu"] = {"gpus": gpus, "status": "not run: time"}
        return
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
