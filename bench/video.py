"""End-to-end ``stylize-video`` throughput against the model alone and against a naive OpenCV loop.

For each network (untrained weights: speed does not depend on them) a temporary artifact is written and, on the
same clip, size and device, in the same run:

* **model only**: :func:`bench.inference.measure_model_fps` at the stylizer's batch size, precision and layout
  (random input already on the device): the ceiling;
* **end to end**: :func:`inference.convert.stylize_file`, i.e. ``stylize-video`` minus argument parsing and model
  loading: decode (PyAV), resize, batched inference, encode (libx264, crf 18, preset medium), audio copied; with the
  Stylizer's ``auto`` backend (ONNX Runtime on the CPU when installed), recorded as ``backend``;
* **before**: the same pipeline with batch 1, NCHW and the torch backend (the starting point);
* **naive**: ``cv2.VideoCapture`` -> resize -> one frame at a time through the same network in fp32 NCHW ->
  ``cv2.VideoWriter`` (mp4v), no audio: the loop people write by hand.

Also a stage profile: decode+resize alone and encode alone (frames/s), to show which stage limits.

Usage (from the repository root)::

    python bench/video.py                                  # a clip from /work/shared/data/videos, 640x360, CPU
    python bench/video.py --input clip.mp4 --size 1280x720 --networks johnson --device cuda

Results: a table on stdout and ``bench/results/video-<device>.json``.
"""

from __future__ import annotations

import os
import sys

# Run as ``python bench/video.py`` this folder comes first on sys.path and bench/inference.py would shadow the
# ``inference`` package; drop that entry and load the sibling benchmark by path instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from inference.artifact import save_artifact  # noqa: E402
from inference.convert import stylize_file  # noqa: E402
from inference.io.media import Resize  # noqa: E402
from inference.io.readers import open_source  # noqa: E402
from inference.io.video_writer import VideoSink  # noqa: E402
from inference.io.writers import EncodeOptions  # noqa: E402
from inference.networks import build_network  # noqa: E402
from inference.stylizer import Stylizer  # noqa: E402

DEFAULT_CLIPS = Path("/work/shared/data/videos")


def _model_fps_fn():
    """``measure_model_fps`` from bench/inference.py if present, else a small local equivalent."""
    path = Path(_HERE) / "inference.py"
    if path.exists():
        spec = importlib.util.spec_from_file_location("bench_inference", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.measure_model_fps

    def measure(net, height, width, batch, device, precision="fp32", channels_last=False, **_):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = net.eval().to(device=device, dtype=dtype, memory_format=fmt)
        x = torch.rand(batch, 3, height, width, device=device, dtype=dtype).contiguous(memory_format=fmt)
        with torch.inference_mode():
            model(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 1.0 or n < 2:
                model(x)
                n += 1
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
        return {"fps": batch * n / (time.perf_counter() - t0)}

    return measure


def naive_fps(
    net: torch.nn.Module, src: Path, dst: Path, size: tuple[int, int], n_frames: int, device: torch.device
) -> float:
    """The hand-written loop: OpenCV decode, one fp32 NCHW frame at a time on ``device``, OpenCV mp4v encode."""
    import cv2

    model = net.float().eval().to(device)
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    done = 0
    with torch.no_grad():
        while done < n_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            x = torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255).unsqueeze(0)
            y = model(x)[0].clamp(0, 1).mul(255).byte().permute(1, 2, 0).cpu().numpy()
            writer.write(cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
            done += 1
    cap.release()
    writer.release()
    return done / (time.perf_counter() - t0)


def stage_fps(src: Path, tmp: Path, size: tuple[int, int], n_frames: int) -> dict[str, float]:
    """Decode+resize alone and encode alone, in frames/s, for the stage profile."""
    source = open_source(src, resize=Resize(size=size, even=True))
    t0, n = time.perf_counter(), 0
    frames = []
    for frame in source.frames():
        frames.append((frame.array, frame.pts))
        n += 1
        if n >= n_frames:
            break
    decode = n / (time.perf_counter() - t0)
    source.close()
    sink = VideoSink(tmp / "enc.mp4", source.info, EncodeOptions(audio=False))
    t0 = time.perf_counter()
    for array, pts in frames:
        sink.write(array, pts)
    sink.close()
    return {"decode_fps": decode, "encode_fps": len(frames) / (time.perf_counter() - t0)}


def run_network(name: str, args: argparse.Namespace, tmp: Path, measure) -> dict[str, Any]:
    torch.manual_seed(0)
    net = build_network(name)
    artifact = save_artifact(tmp / f"{name}.safetensors", net, style_name="bench", style_sha256="0" * 64,
                             config={}, temporal=False)  # fmt: skip
    w, h = args.size
    stylizer = Stylizer.from_artifact(
        artifact, device=args.device, precision=args.precision, batch_size=args.batch_size
    )
    device = stylizer.device
    precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[stylizer.dtype]
    model = measure(build_network(name), h, w, args.batch_size, device, precision,
                    channels_last=stylizer.channels_last)["fps"]  # fmt: skip
    # Enough frames for about --seconds of model time per run, and at least three batches so that the stages can
    # overlap at all (with one batch, decode, inference and encode necessarily run one after the other).
    n = int(max(3 * args.batch_size, min(args.max_frames, round(model * args.seconds))))
    duration = n / float(args.rate)
    row: dict[str, Any] = {"network": name, "device": str(device), "precision": precision, "size": f"{w}x{h}",
                           "batch": args.batch_size, "frames": n, "model_fps": model,
                           "backend": stylizer.backend}  # fmt: skip
    t0 = time.perf_counter()
    res = stylize_file(stylizer, args.input, tmp / f"{name}.mp4", duration=duration, size=(w, h), overwrite=True)
    row["e2e_fps"] = res.frames / (time.perf_counter() - t0)
    row["frames"] = res.frames
    if not args.skip_before:
        before = Stylizer.from_artifact(artifact, device=args.device, precision=args.precision, batch_size=1,
                                        channels_last=False, backend="torch")  # fmt: skip
        t0 = time.perf_counter()
        res = stylize_file(before, args.input, tmp / f"{name}-b1.mp4", duration=duration, size=(w, h), overwrite=True)
        row["before_e2e_fps"] = res.frames / (time.perf_counter() - t0)
    row["naive_fps"] = naive_fps(build_network(name), args.input, tmp / f"{name}-naive.mp4", (w, h), res.frames, device)
    row.update(stage_fps(args.input, tmp, (w, h), max(res.frames, 24)))
    row["e2e_over_model"] = row["e2e_fps"] / model
    row["e2e_over_naive"] = row["e2e_fps"] / row["naive_fps"]
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, default=None, help="video clip (default: one from /work/shared/data/videos)")
    p.add_argument("--size", default="640x360", help="WxH the clip is resized to (default 640x360)")
    p.add_argument("--networks", default="johnson,light")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="default 8 on a GPU, 1 on the CPU (the Stylizer's)")
    p.add_argument("--seconds", type=float, default=15.0, help="target model time per end-to-end run")
    p.add_argument("--max-frames", type=int, default=1000)
    p.add_argument("--skip-before", action="store_true", help="skip the batch-1 NCHW 'before' run")
    p.add_argument("--out", type=Path, default=Path(_HERE) / "results")
    args = p.parse_args(argv)
    if args.input is None:
        clips = sorted(DEFAULT_CLIPS.glob("*.mp4")) if DEFAULT_CLIPS.is_dir() else []
        if not clips:
            p.error("--input is required (no clip in /work/shared/data/videos)")
        args.input = clips[0]
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.batch_size is None:
        # The Stylizer's own default: batch 1 ran faster per frame than batch 4 on the 2-core CPU.
        args.batch_size = 8 if args.device != "cpu" and torch.cuda.is_available() else 1
    probe = open_source(args.input)
    args.rate = probe.info.rate
    probe.close()
    measure = _model_fps_fn()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks.split(","):
            rows.append(run_network(name.strip(), args, Path(tmp), measure))
            print(f"done: {name}", file=sys.stderr)
    head = ["network", "device", "precision", "backend", "frames", "model_fps", "e2e_fps", "before_e2e_fps",
            "naive_fps", "decode_fps", "encode_fps", "e2e_over_model", "e2e_over_naive"]  # fmt: skip
    print(f"clip: {args.input} resized to {args.size[0]}x{args.size[1]}, batch {args.batch_size}")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(f"{r.get(k):.2f}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in head))
    device = rows[0]["device"].split(":")[0] if rows else "cpu"
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "clip": str(args.input),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"video-{device}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
