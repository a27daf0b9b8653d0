"""Model-only inference benchmark: frames/s and peak memory of each style network.

Grid: networks (johnson, light, identity) x frame sizes (640x360, 1280x720, 1920x1080) x batch sizes x precision
(fp32 / fp16 / bf16) x backend x channels_last off/on x ``torch.compile`` off/on, on every device present. "Model
only" means a random input already on the device in the right dtype and memory format, run through
``Stylizer.run_network`` of a Stylizer configured as an end-to-end run would be (same backend: ONNX Runtime on the
CPU where the Stylizer picks it; same precision and layout). Decoding, colour conversion, copies and encoding are not
counted (``bench/video.py`` measures those end to end).

Usage (from the repository root)::

    python -m bench.runtime_speed                 # quick grid on the CPU, full grid on a GPU if present
    python -m bench.runtime_speed --full          # no skipping of slow CPU rows
    python -m bench.runtime_speed --devices cuda --compile both --time-budget 400
    python -m bench.runtime_speed --networks johnson,light --sizes 640x360 --batches 1 --precisions fp32 \
        --channels-last off --num-styles 1,4 --out 'bench/results/inference-multistyle-{device}.json'
                                              # multi-style (conditional norm) networks against single-style ones

Each device's rows go to ``bench/results/inference-<device>.json`` (written after every row, so an interrupted
run keeps what it measured) and a table is printed. Other benchmarks reuse :func:`measure_model_fps`.

Timing: warm-up calls (which also trigger compilation), then ``--repeats`` (at least 3) timed repetitions, each
until both a minimum time and a minimum number of calls are reached; on CUDA the clock is read after
``torch.cuda.synchronize``. frames/s = batch x calls / seconds; a row reports the median over the repetitions and
their range (min-max). Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the timed calls (weights, input,
activations; reset after warm-up, so cuDNN's one-off autotuning workspaces are excluded); on the CPU the growth of
the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` where the kernel allows, else
``ru_maxrss``, which can only report a new process-wide peak).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.environment import environment
from inference.core.errors import UserError
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network, count_parameters, flops_per_pixel

SIZES = {"640x360": (360, 640), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_cpu_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) for this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_supports(precision: str, full: bool = False) -> tuple[bool, str]:
    """Whether ``precision`` is benchmarked on the CPU, and a note.

    fp16 is always skipped on the CPU; bf16 only runs where oneDNN has native bf16 kernels (AVX512-BF16 / AMX),
    unless ``full``: emulated bf16 was about 5x slower than fp32 on an AVX2 CPU, so it is never worth using there.
    """
    if precision == "fp16":
        return False, "skipped: fp16 on CPU (no fast fp16 convolutions)"
    if precision == "bf16":
        native = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
        if not native:
            return full, "no native bf16 on this CPU (emulated)" if full else "skipped: no native bf16 on this CPU"
    return True, ""


def _base_row(net: nn.Module, device: torch.device, height: int, width: int, batch: int, **config: Any) -> dict:
    return {
        "network": getattr(net, "name", type(net).__name__), "device": str(device), "size": f"{width}x{height}",
        "batch": batch, **config, "fps": None, "fps_min": None, "fps_max": None, "repeats": [],
        "ms_per_batch": None, "peak_mem_mb": None, "iters": 0, "status": "ok", "note": "",
    }  # fmt: skip


class _CpuPeak:
    """Growth of the process's peak resident set over one measurement (see the module docstring)."""

    def __init__(self) -> None:
        self.rss_before = _proc_status_kb("VmRSS")
        self.hwm_reset = _reset_cpu_peak()
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def result(self) -> tuple[float, str]:
        """``(peak MB, note)``."""
        if self.hwm_reset and self.rss_before is not None:
            return max(0, (_proc_status_kb("VmHWM") or 0) - self.rss_before) / 1024, ""
        # ru_maxrss only grows: a row that does not exceed an earlier peak reports 0 growth.
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.maxrss_before) / 1024
        return growth, "peak RSS growth over the process's earlier peak"


def _time_calls(run, device: torch.device, min_time: float, min_iters: int, max_iters: int) -> tuple[int, float]:
    """Call ``run()`` until ``min_time`` seconds and ``min_iters`` calls are both reached; ``(calls, seconds)``.

    On CUDA the clock is read after a synchronisation, every few calls only, so checking it does not drain the
    launch queue.
    """
    cuda = device.type == "cuda"
    chunk = 5 if cuda else 1
    iters, elapsed, start = 0, 0.0, time.perf_counter()
    while iters < max_iters and (elapsed < min_time or iters < min_iters):
        for _ in range(chunk):
            run()
        iters += chunk
        if cuda:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    return iters, elapsed


def _network_runner(net: nn.Module, device: torch.device, precision: str, channels_last: bool, compile: bool,
                    backend: str) -> tuple[Stylizer, str]:  # fmt: skip
    """A Stylizer over a copy of ``net`` configured like an end-to-end run, and the backend it resolved."""
    if compile:
        # Every row compiles a fresh copy of the same forward code; without a reset dynamo would hit its recompile
        # limit after a few rows and silently fall back to eager.
        torch._dynamo.reset()
    options = RuntimeOptions(
        device=device, precision=precision, channels_last=channels_last, compile=compile, backend=backend
    )
    stylizer = Stylizer(copy.deepcopy(net), options)
    return stylizer, stylizer.backend


def measure_model_fps(
    net: nn.Module,
    height: int,
    width: int,
    batch: int,
    device: str | torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    *,
    backend: str = "auto",
    repeats: int = 3,
    warmup: int | None = None,
    min_time: float | None = None,
    min_iters: int | None = None,
    max_iters: int = 500,
) -> dict[str, Any]:
    """Model-only throughput and peak memory of one configuration, run exactly as the Stylizer runs it.

    Through :meth:`inference.engine.stylizer.Stylizer.run_network` of a Stylizer with the end-to-end run's device,
    precision, layout, compile and backend options (a copy of ``net``: the caller's network is not changed).

    Args:
        net: A style network (``[B,3,H,W]`` in [0,1] to the same shape).
        height: Frame height in pixels.
        width: Frame width in pixels.
        batch: Frames per call.
        device: ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        precision: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"auto"`` (the Stylizer's choice).
        channels_last: Use the NHWC memory format for weights and input.
        compile: Wrap the network in ``torch.compile`` (compiled during warm-up).
        backend: ``"auto"``, ``"torch"`` or ``"onnxruntime"``, as for the Stylizer.
        repeats: Timed repetitions after the warm-up (at least 3); the row reports their median and range.
        warmup, min_time, min_iters, max_iters: Untimed calls first (default 1 on CPU, 5 on CUDA, +2 compiled);
            minimum seconds (1.0 CPU, 0.5 CUDA) and calls (2 CPU, 10 CUDA) and maximum calls per repetition.

    Returns:
        The configuration, resolved ``backend`` and ``precision``, ``fps`` (median over repetitions), ``fps_min``,
        ``fps_max``, ``repeats``, ``ms_per_batch``, ``peak_mem_mb``, ``iters``, ``status`` (ok/failed/oom), ``note``.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    warmup = (5 if cuda else 1) + (2 if compile else 0) if warmup is None else warmup
    min_time = (0.5 if cuda else 1.0) if min_time is None else min_time
    min_iters = (10 if cuda else 2) if min_iters is None else min_iters
    row = _base_row(net, device, height, width, batch, precision=precision, channels_last=channels_last,
                    compile=compile, backend=backend)  # fmt: skip
    try:
        stylizer, row["backend"] = _network_runner(net, device, precision, channels_last, compile, backend)
        row["precision"] = stylizer.precision_report.chosen
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.rand(batch, 3, height, width, device=device, dtype=stylizer.dtype).contiguous(memory_format=fmt)
        _measure(row, lambda: stylizer.run_network(x), device, warmup, max(3, repeats), min_time, min_iters, max_iters)
    except torch.cuda.OutOfMemoryError:
        row.update(status="oom", note="CUDA out of memory")
    except Exception as exc:  # compile and backend failures become a row note, never a crash of the whole grid
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row.update(status="failed", note=f"{type(exc).__name__}: {first}"[:200])
    finally:
        if cuda:
            torch.cuda.empty_cache()
    return row


def _measure(row: dict, run, device: torch.device, warmup: int, repeats: int, *limits: float) -> None:
    """Warm up, then time ``repeats`` repetitions of ``run`` into ``row`` (median and range), with peak memory."""
    cuda = device.type == "cuda"
    peak = None if cuda else _CpuPeak()
    with torch.inference_mode():
        for _ in range(warmup):
            run()
        if cuda:
            # Reset after warm-up: cuDNN's one-off autotuning workspaces are not steady-state memory.
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        timings = [_time_calls(run, device, *limits) for _ in range(repeats)]
    fps = sorted(row["batch"] * iters / seconds for iters, seconds in timings)
    row.update(
        fps=statistics.median(fps), fps_min=fps[0], fps_max=fps[-1], repeats=fps, iters=sum(i for i, _ in timings),
        ms_per_batch=statistics.median(1000 * seconds / iters for iters, seconds in timings),
    )  # fmt: skip
    if cuda:
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        row["peak_mem_mb"], row["note"] = peak.result()


def machine_info(device: str) -> dict[str, Any]:
    """Machine, library versions, date and load for the JSON record (:func:`bench.environment.environment`)."""
    info = environment(device)
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _fmt(row: dict[str, Any]) -> str:
    def num(key: str, width: int, digits: int = 1) -> str:
        return f"{row[key]:{width}.{digits}f}" if row.get(key) is not None else f"{'-':>{width}}"

    spread = f"{num('fps_min', 7)}-{num('fps_max', 7).strip():<7}" if row.get("fps_min") is not None else f"{'-':>15}"
    return (
        f"{_net_label(row):8} {row['device']:5} {row['size']:>9} {row['batch']:>3} {row['precision']:5} "
        f"{row['backend']:11} {'on' if row['channels_last'] else 'off':>3} {'on' if row['compile'] else 'off':>4} "
        f"{num('fps', 9)} {spread} {num('ms_per_batch', 9)} {num('peak_mem_mb', 8, 0)}  {row['status']:7} {row['note']}"
    )


def _net_label(row: dict[str, Any]) -> str:
    """The network name, with ``/S`` for a network of ``S > 1`` styles."""
    styles = row.get("num_styles", 1)
    return row["network"] + (f"/{styles}" if styles > 1 else "")


HEADER = (
    f"{'network':8} {'dev':5} {'size':>9} {'bat':>3} {'prec':5} {'backend':11} {'cl':>3} {'comp':>4} "
    f"{'frames/s':>9} {'range':>15} {'ms/batch':>9} {'peak MB':>8}  {'status':7} note"
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--devices", default=",".join(devices), help="comma-separated (default: all present)")
    parser.add_argument("--networks", default="johnson,light,identity", help="comma-separated registry names")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated WxH")
    parser.add_argument("--batches", default=None, help="comma-separated (default: 1,4 on CPU; 1,4,8,16 on CUDA)")
    parser.add_argument("--precisions", default="fp32,fp16,bf16")
    parser.add_argument("--backends", default="auto", help="comma-separated: auto (the Stylizer's choice), torch, "
                        "onnxruntime")  # fmt: skip
    parser.add_argument("--channels-last", default="both", choices=["off", "on", "both"])
    parser.add_argument("--num-styles", default="1", help="comma-separated style counts of the networks (default 1)")
    parser.add_argument(
        "--compile", default=None, choices=["off", "on", "both"], help="default: off on CPU, both on CUDA"
    )
    parser.add_argument("--compile-batches", default="8", help="batch sizes that get compiled rows (default 8)")
    parser.add_argument("--compile-sizes", default="1920x1080", help="frame sizes that get compiled rows")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per row (at least 3)")
    parser.add_argument("--min-time", type=float, default=None, help="seconds per repetition (default 1 CPU, 0.5 GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--full", action="store_true", help="CPU: do not skip rows estimated above --max-iter-s")
    parser.add_argument("--max-iter-s", type=float, default=3.0, help="CPU: skip rows estimated slower per call")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per device; later rows skipped")
    parser.add_argument("--out", default="bench/results/inference-{device}.json")
    return parser.parse_args(argv)


def _grid(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """Rows to run, in order: eager rows first (small to large), compiled rows last (they cost compile time)."""
    cuda = device == "cuda"
    batches = [int(b) for b in (args.batches or ("1,4,8,16" if cuda else "1,4")).split(",")]
    cls = {"off": [False], "on": [True], "both": [False, True]}[args.channels_last]
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile or ("both" if cuda else "off")]
    compile_batches = {int(b) for b in args.compile_batches.split(",")}
    compile_sizes = set(args.compile_sizes.split(","))
    rows = []
    for compiled, name, precision, backend, size, batch, cl, styles in itertools.product(
        compile_modes, args.networks.split(","), args.precisions.split(","), args.backends.split(","),
        args.sizes.split(","), batches, cls, [int(n) for n in args.num_styles.split(",")],
    ):  # fmt: skip
        if compiled and (batch not in compile_batches or size not in compile_sizes):
            continue
        rows.append(dict(name=name, precision=precision, backend=backend, size=size, batch=batch, cl=cl,
                         compile=compiled, styles=styles))  # fmt: skip
    return rows


def _skip_reason(args: argparse.Namespace, device: str, spec: dict, elapsed: float, seconds_per_pixel: dict) -> str:
    """Why a row is not run (empty: run it)."""
    width, height = (int(v) for v in spec["size"].split("x"))
    if device == "cpu" and not cpu_supports(spec["precision"], args.full)[0]:
        return cpu_supports(spec["precision"], args.full)[1]
    if args.time_budget is not None and elapsed > args.time_budget:
        return f"skipped: time budget {args.time_budget:.0f} s spent"
    key = (spec["name"], spec["styles"], spec["precision"], spec["backend"], spec["cl"], spec["compile"])
    if device == "cpu" and not args.full and key in seconds_per_pixel:
        estimate = seconds_per_pixel[key] * width * height * spec["batch"]
        if estimate > args.max_iter_s:
            return f"skipped: estimated {estimate:.1f} s per call (run with --full)"
    return ""


def _run_row(args: argparse.Namespace, device: str, spec: dict, net: nn.Module, skip: str) -> dict[str, Any]:
    width, height = (int(v) for v in spec["size"].split("x"))
    config = dict(precision=spec["precision"], channels_last=spec["cl"], compile=spec["compile"])
    if skip:
        row = _base_row(net, torch.device(device), height, width, spec["batch"], backend=spec["backend"], **config)
        row.update(status="skipped", note=skip, num_styles=spec["styles"])
        return row
    row = measure_model_fps(
        net, height, width, spec["batch"], device, backend=spec["backend"], repeats=args.repeats,
        min_time=args.min_time, **config,
    )  # fmt: skip
    row["num_styles"] = spec["styles"]
    if device == "cpu" and row["status"] == "ok" and not row["note"]:
        row["note"] = cpu_supports(spec["precision"], args.full)[1]
    return row


def _bench_network(name: str, num_styles: int) -> nn.Module | None:
    """A network of the registry; a multi-style one gets distinct per-style parameters, as a trained one has (the
    speed does not depend on them, the conditional norms' code path does). ``None``: no multi-style variant
    (``identity``)."""
    if num_styles == 1:
        return build_network(name)
    try:
        net = build_network(name, num_styles=num_styles)
    except UserError:
        return None
    with torch.no_grad():
        for param in net.parameters():
            if param.dim() == 2 and param.shape[0] == num_styles:
                param.add_(0.1 * torch.randn_like(param))
    return net


def _write(record: dict[str, Any], out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out)


def run_device(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """Run the grid on one device, printing rows and rewriting the JSON file after each."""
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per row: let cuDNN pick its fastest kernels
    out = Path(args.out.format(device=device))
    out.parent.mkdir(parents=True, exist_ok=True)
    styles = sorted({int(n) for n in args.num_styles.split(",")})
    nets = {(name, n): _bench_network(name, n) for name in args.networks.split(",") for n in styles}
    nets = {key: net for key, net in nets.items() if net is not None}
    record: dict[str, Any] = {
        "benchmark": "inference (model only, through Stylizer.run_network)",
        "machine": machine_info(device),
        "networks": {
            _net_label({"network": n, "num_styles": k}): {
                "params": count_parameters(m),
                "flops_per_pixel": flops_per_pixel(m),
                "config": m.config,
            }
            for (n, k), m in nets.items()
        },  # fmt: skip
        "rows": [],
    }
    seconds_per_pixel: dict[tuple, float] = {}  # per (network, precision, backend, cl, compile): CPU skip estimates
    start = time.perf_counter()
    print(f"\n== {device}: {record['machine'].get('gpu', record['machine']['cpu'])}, "
          f"{record['machine']['torch_threads']} torch threads")  # fmt: skip
    print(HEADER)
    for spec in _grid(args, device):
        if (spec["name"], spec["styles"]) not in nets:
            continue
        skip = _skip_reason(args, device, spec, time.perf_counter() - start, seconds_per_pixel)
        row = _run_row(args, device, spec, nets[spec["name"], spec["styles"]], skip)
        if device == "cpu" and row["status"] == "ok":
            width, height = (int(v) for v in spec["size"].split("x"))
            key = (spec["name"], spec["styles"], spec["precision"], spec["backend"], spec["cl"], spec["compile"])
            seconds_per_pixel[key] = row["ms_per_batch"] / 1000 / (width * height * spec["batch"])
        print(_fmt(row), flush=True)
        record["rows"].append(row)
        record["wall_s"] = round(time.perf_counter() - start, 1)
        _write(record, out)
    record["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    _write(record, out)
    print(f"wrote {out} ({record['wall_s']} s)")
    return record["rows"]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark grid on every requested device."""
    args = _parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for device in args.devices.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, GPU rows not measured")
            continue
        run_device(args, device)


if __name__ == "__main__":
    main()
