"""libx264 speed and file size per preset and threading mode at equal CRF: the evidence behind the encoder defaults.

The clip is decoded and resized once (to I420 planes in memory), then encoded with each preset and threading mode
(frame threads on every core, as ``VideoSink`` configures it; PyAV's default slice threads; one thread), one warm-up
and ``--repeats`` timed runs each; median and range of frames/s (PSNR decoding excluded), the output size, and the
luma PSNR against the input (equal CRF is not equal quality across presets).

Usage (from the repository root)::

    python -m bench.encoder_presets --repeats 3

Results: a table on stdout and ``bench/results/encoder-presets-cpu.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.environment import environment, shared_clip

_HERE = Path(__file__).resolve().parent
THREADING = {"frame-auto": ("FRAME", 0), "slice-auto": ("SLICE", 0), "one-thread": ("FRAME", 1)}


def decode(path: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """Every frame of ``path`` as I420 planes at ``size``."""
    with av.open(str(path)) as c:
        return [f.reformat(*size, format="yuv420p", interpolation="AREA").to_ndarray() for f in c.decode(video=0)]


def encode(planes: list[np.ndarray], size: tuple[int, int], preset: str, crf: int, threading: str) -> tuple:
    """Encode into an in-memory MP4; returns ``(frames/s, bytes, luma PSNR in dB against the input)``."""
    buf = io.BytesIO()
    t0 = time.perf_counter()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        s.codec_context.thread_type, s.codec_context.thread_count = THREADING[threading]
        s.options = {"crf": str(crf), "preset": preset}
        for p in planes:
            out.mux(s.encode(av.VideoFrame.from_ndarray(p, format="yuv420p")))
        out.mux(s.encode())
    fps = len(planes) / (time.perf_counter() - t0)
    return fps, buf.getbuffer().nbytes, luma_psnr(buf, planes, size[1])


def luma_psnr(buf: io.BytesIO, planes: list[np.ndarray], height: int) -> float:
    """Mean squared error of the decoded Y planes against the input's, as PSNR in dB (the same for every run)."""
    buf.seek(0)
    with av.open(buf) as c:
        decoded = [f.to_ndarray()[:height].astype(np.float64) for f in c.decode(video=0)]
    mse = np.mean([np.mean((d - p[:height]) ** 2) for d, p in zip(decoded, planes, strict=True)])
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def measure(planes, size, preset: str, crf: int, threading: str, repeats: int) -> dict[str, Any]:
    encode(planes, size, preset, crf, threading)
    runs = [encode(planes, size, preset, crf, threading) for _ in range(repeats)]
    fps = [r[0] for r in runs]
    return {"preset": preset, "threading": threading, "crf": crf, "fps_median": statistics.median(fps),
            "fps_min": min(fps), "fps_max": max(fps), "bytes": runs[0][1], "y_psnr_db": runs[0][2]}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, default=shared_clip("big_buck_bunny_5s.mp4"))
    p.add_argument("--size", default="640x360")
    p.add_argument("--presets", default="veryfast,faster,medium")
    p.add_argument("--threading", default=",".join(THREADING))
    p.add_argument("--crf", type=int, default=18)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=_HERE / "results" / "encoder-presets-cpu.json")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    planes = decode(args.input, size)
    rows = [
        measure(planes, size, preset, args.crf, threading, args.repeats)
        for preset in args.presets.split(",")
        for threading in args.threading.split(",")
    ]
    print(f"{args.input.name} at {args.size}, {len(planes)} frames, crf {args.crf}")
    for r in rows:
        print(f"{r['preset']:>9} {r['threading']:>10}: {r['fps_median']:6.1f} frames/s "
              f"[{r['fps_min']:.1f}-{r['fps_max']:.1f}], {r['bytes'] / 1024:.0f} KiB, "
              f"Y PSNR {r['y_psnr_db']:.2f} dB")  # fmt: skip
    record = {**environment("cpu"), "ffmpeg": av.ffmpeg_version_info, "clip": str(args.input),
              "size": args.size, "frames": len(planes), "repeats": args.repeats, "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
