"""End-to-end ``stylize-video`` throughput, its stage table, and the ceilings and baselines it is judged against.

For each network (untrained weights: speed does not depend on them; ``identity`` measures the pipeline alone), on
the same clip, size, device, backend and precision, in the same run:

* **model only**: the Stylizer's own forward (same backend, e.g. ONNX Runtime on the CPU, same precision and batch)
  on a float input already on the device: the network's ceiling;
* **end to end**: :func:`inference.app.convert.stylize_file` (``stylize-video`` minus argument parsing and model
  loading), with its stage table (``--stats``): decode, colour, upload, network, download, colour back, encode, mux;
* **end to end, other path** (CPU only): the same with the path the CPU does not use by default (YUV planes to the
  network, or the host swscale RGB path), a check of ``stylize_file``'s ``planes`` default;
* **serial**: the same reader, Stylizer and encoder, one frame after the other in one thread (no overlap);
* **naive**: ``cv2.VideoCapture`` -> resize -> the network one frame at a time -> ``cv2.VideoWriter`` (mp4v);
* **I/O ceiling** (once per run): a bare PyAV transcode: decode, swscale to RGB, libx264 at the same CRF and preset.

Every figure is measured after one warm-up run, ``--repeats`` times; the median and the range are reported.

Usage (from the repository root)::

    python -m bench.video --repeats 3                       # a 2 s clip of the data root's videos/, 640x360
    python -m bench.video --input clip.mp4 --size 1920x1080 --networks identity,johnson --device cuda

Results: tables on stdout and ``bench/results/video-<device>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.environment import environment, shared_clip
from inference.app.convert import stylize_file
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.io.encode_options import EncodeOptions
from inference.io.readers import open_source
from inference.io.video_writer import VideoSink
from inference.model.networks import build_network

DEFAULT_CLIP = shared_clip("sintel_2s.mp4")


def repeated(fn: Callable[[], float], repeats: int) -> dict[str, Any]:
    """Run ``fn`` (returning frames/s) once to warm up, then ``repeats`` times: median, min, max and all runs."""
    fn()
    runs = [fn() for _ in range(repeats)]
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def network(name: str) -> torch.nn.Module:
    """A registry network with fixed random weights; ``identity`` falls back to ``nn.Identity`` if not registered."""
    torch.manual_seed(0)
    try:
        return build_network(name)
    except Exception:  # noqa: BLE001 - an older registry without "identity".
        if name != "identity":
            raise
        return torch.nn.Identity()


def model_only_fps(stylizer: Stylizer, size: tuple[int, int], seconds: float = 1.0) -> float:
    """The Stylizer's own network step (``run_network``: backend, precision, batch) on a device input."""
    w, h = size
    x = torch.rand(stylizer.batch_size, 3, h, w, device=stylizer.device, dtype=stylizer.dtype)
    with torch.inference_mode():
        stylizer.run_network(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 3:
            stylizer.run_network(x)
            n += 1
        if stylizer.device.type == "cuda":
            torch.cuda.synchronize()
    return stylizer.batch_size * n / (time.perf_counter() - t0)


def uses_planes(stylizer: Stylizer, other: bool = False) -> bool:
    """Whether ``stylize_file`` sends YUV planes to this Stylizer (``other``: the opposite, CPU only)."""
    default = stylizer.device.type != "cpu"  # stylize_file's choice with planes=None
    return not default if other else default


def e2e_fps(stylizer: Stylizer, args: argparse.Namespace, dst: Path, tables: list, planes: bool) -> float:
    """``stylize_file`` with stage accounting; appends its stage table (as a dict) to ``tables``."""
    with contextlib.redirect_stderr(io.StringIO()):  # stats=True times the device stages; the table is kept.
        res = stylize_file(stylizer, args.input, dst, duration=args.duration, size=args.size, crf=args.crf,
                           preset=args.preset, overwrite=True, stats=True, audio=False, planes=planes)  # fmt: skip
    table = res.clock.table(res.seconds)
    tables.append({**res.clock.as_dict(res.seconds), "frame_format": res.frame_format, "table": table})
    return res.fps


def serial_fps(stylizer: Stylizer, args: argparse.Namespace, dst: Path) -> float:
    """Same reader, Stylizer and encoder as end to end, in one thread: decode, stylize, encode, one frame at a time."""
    t0 = time.perf_counter()
    planes = uses_planes(stylizer)
    source = open_source(args.input, size=args.size, duration=args.duration, even=True, planes=planes)
    sink = VideoSink(dst, source.info, EncodeOptions(crf=args.crf, preset=args.preset, audio=False))
    yuv_in = source.info.yuv
    yuv_out = sink.yuv_spec if yuv_in is not None else None
    write = sink.write_planes if yuv_out is not None else sink.write
    for frame in source.frames():
        for out, pts in stylizer.process([(frame.array, frame.pts)], yuv_in=yuv_in, yuv_out=yuv_out):
            write(out, pts)
    sink.close()
    return sink.frames / (time.perf_counter() - t0)


def naive_fps(net: torch.nn.Module, args: argparse.Namespace, dst: Path, device: torch.device) -> float:
    """The hand-written loop: OpenCV decode, one fp32 frame at a time on ``device``, OpenCV mp4v encode."""
    import cv2

    model = net.float().eval().to(device)
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(args.input))
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS) or 25.0, args.size)
    done = 0
    with torch.no_grad():
        while done < args.frames:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(cv2.resize(bgr, args.size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            x = torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255).unsqueeze(0)
            y = model(x)[0].clamp(0, 1).mul(255).byte().permute(1, 2, 0).cpu().numpy()
            writer.write(cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
            done += 1
    cap.release()
    writer.release()
    return done / (time.perf_counter() - t0)


def transcode_fps(args: argparse.Namespace, dst: Path) -> float:
    """The I/O ceiling: bare PyAV decode -> swscale to RGB at the size -> libx264 (same CRF and preset)."""
    import av

    w, h = args.size
    t0 = time.perf_counter()
    with av.open(str(args.input)) as src, av.open(str(dst), "w") as out:
        vin = src.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.codec_context.thread_type = "FRAME"
        vout.options = {"crf": str(args.crf), "preset": args.preset}
        n = 0
        for frame in src.decode(vin):
            if n >= args.frames:
                break
            rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
            out.mux(vout.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            n += 1
        out.mux(vout.encode())
    return n / (time.perf_counter() - t0)


def run_network(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Every measurement of one network; returns its row."""
    stylizer = Stylizer(
        network(name), RuntimeOptions(device=args.device, precision=args.precision, batch_size=args.batch_size)
    )
    precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[stylizer.dtype]
    row: dict[str, Any] = {"network": name, "device": str(stylizer.device), "backend": stylizer.backend,
                           "precision": precision, "batch": stylizer.batch_size, "frames": args.frames,
                           "encoder": f"libx264 crf {args.crf} preset {args.preset}"}  # fmt: skip
    r = args.repeats
    row["model_only_fps"] = repeated(lambda: model_only_fps(stylizer, args.size), r)
    tables: list = []
    row["e2e_fps"] = repeated(lambda: e2e_fps(stylizer, args, tmp / "e2e.mp4", tables, uses_planes(stylizer)), r)
    row["stages"] = tables[-1]
    if stylizer.device.type == "cpu":
        other: list = []
        row["e2e_other_path_fps"] = repeated(
            lambda: e2e_fps(stylizer, args, tmp / "o.mp4", other, uses_planes(stylizer, other=True)), r
        )
        row["stages_other_path"] = other[-1]
    row["serial_fps"] = repeated(lambda: serial_fps(stylizer, args, tmp / "serial.mp4"), r)
    row["naive_fps"] = repeated(lambda: naive_fps(network(name), args, tmp / "naive.mp4", stylizer.device), r)
    row["naive_encoder"] = "OpenCV mp4v (MPEG-4 part 2)"
    row["serial_encoder"] = row["encoder"]
    row["e2e_over_model"] = row["e2e_fps"]["median"] / row["model_only_fps"]["median"]
    return row


def _fmt(stat: dict[str, Any] | float | None) -> str:
    if isinstance(stat, dict):
        return f"{stat['median']:.2f} [{stat['min']:.2f}-{stat['max']:.2f}]"
    return "-" if stat is None else f"{stat:.2f}"


def print_rows(rows: list[dict[str, Any]], io_ceiling: dict[str, Any]) -> None:
    """A summary table (median [min-max] frames/s), then each network's end-to-end stage table."""
    head = ["model_only_fps", "e2e_fps", "e2e_other_path_fps", "serial_fps", "naive_fps"]
    print(f"I/O ceiling (bare PyAV transcode, libx264): {_fmt(io_ceiling)} frames/s")
    print(" | ".join(["network", "backend", "precision", *head, "e2e/model"]))
    for r in rows:
        cells = [r["network"], r["backend"], r["precision"], *(_fmt(r.get(k)) for k in head)]
        print(" | ".join([*cells, f"{r['e2e_over_model']:.2f}"]))
    for r in rows:
        for key in ("stages", "stages_other_path"):
            if key in r:
                print(f"\n{r['network']} end to end ({r[key]['frame_format']} frames):\n{r[key]['table']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, default=DEFAULT_CLIP, help=f"video clip (default {DEFAULT_CLIP})")
    p.add_argument("--size", default="640x360", help="WxH the clip is resized to (default 640x360)")
    p.add_argument("--networks", default="identity,light")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="default: the Stylizer's (8 on CUDA, 1 on the CPU)")
    p.add_argument("--duration", type=float, default=None, help="seconds of the clip to use (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="measured runs per figure, after one warm-up (>= 3)")
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--preset", default="medium")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)
    if not args.input.is_file():
        p.error(f"--input {args.input}: no such file")
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    probe = open_source(args.input, duration=args.duration)
    args.frames = probe.info.n_frames or 10**9
    probe.close()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        io_ceiling = repeated(lambda: transcode_fps(args, Path(tmp) / "transcode.mp4"), args.repeats)
        rows = []
        for name in args.networks.split(","):
            rows.append(run_network(name.strip(), args, Path(tmp)))
            print(f"done: {name}", file=sys.stderr)
    print(f"clip: {args.input} resized to {args.size[0]}x{args.size[1]}, {args.frames} frames")
    print_rows(rows, io_ceiling)
    device = rows[0]["device"].split(":")[0] if rows else "cpu"
    record = {
        **environment(device),
        "command": "python -m bench.video " + " ".join(sys.argv[1:] if argv is None else argv),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "clip": str(args.input),
        "size": f"{args.size[0]}x{args.size[1]}",
        "repeats": args.repeats,
        "io_ceiling_fps": io_ceiling,
        "io_ceiling_encoder": f"libx264 crf {args.crf} preset {args.preset}",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"video-{device}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
