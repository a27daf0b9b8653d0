"""CPU: YUV planes to the network and back (``stylize_file(..., planes=True)``) against the host swscale RGB
path, end to end with the same network, clip, size and encoder; the measurement behind ``stylize_file``'s default
(``planes=None``) keeping the RGB path on the CPU.

Runs alternate between the two paths (ABAB...) so that a change in machine load hits both alike; one warm-up each,
then ``--repeats`` runs per path: median, best and range of frames/s, and the colour stages' busy ms per frame.

Usage (from the repository root)::

    python -m bench.yuv_path --repeats 5

Results: a table on stdout and ``bench/results/yuv-path-cpu.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

import inference.app.convert as convert
from bench.environment import environment, shared_clip
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network


def one_run(stylizer: Stylizer, args: argparse.Namespace, dst: Path, planes: bool) -> dict[str, float]:
    with contextlib.redirect_stderr(io.StringIO()):  # stats=True times the device's colour stages too.
        res = convert.stylize_file(
            stylizer, args.input, dst, size=args.size, overwrite=True, audio=False, stats=True, planes=planes
        )
    n = max(res.frames, 1)
    busy = res.clock.busy
    return {"fps": res.fps, "colour_ms": 1000 * busy["colour"] / n, "colour_back_ms": 1000 * busy["colour back"] / n}


def compare(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    stylizer = Stylizer(build_network(name), RuntimeOptions(device="cpu"))
    runs: dict[str, list] = {"yuv": [], "rgb": []}
    for i in range(args.repeats + 1):
        for path in ("yuv", "rgb"):
            r = one_run(stylizer, args, tmp / f"{path}.mp4", path == "yuv")
            if i > 0:  # The first round warms up.
                runs[path].append(r)
    row: dict[str, Any] = {"network": name, "backend": stylizer.backend}
    for path, rs in runs.items():
        fps = [r["fps"] for r in rs]
        row[path] = {"fps_median": statistics.median(fps), "fps_best": max(fps), "fps_min": min(fps),
                     "colour_ms_median": statistics.median(r["colour_ms"] for r in rs),
                     "colour_back_ms_median": statistics.median(r["colour_back_ms"] for r in rs)}  # fmt: skip
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, default=shared_clip("sintel_2s.mp4"))
    p.add_argument("--size", default="640x360")
    p.add_argument("--networks", default="tiny,light")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "yuv-path-cpu.json")
    args = p.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [compare(name, args, Path(tmp)) for name in args.networks.split(",")]
    for r in rows:
        for path in ("yuv", "rgb"):
            s = r[path]
            print(f"{r['network']:>6} {path}: {s['fps_median']:.2f} frames/s (best {s['fps_best']:.2f}, worst "
                  f"{s['fps_min']:.2f}); colour {s['colour_ms_median']:.1f} ms, "
                  f"back {s['colour_back_ms_median']:.1f} ms")  # fmt: skip
    record = {**environment("cpu"), "clip": str(args.input),
              "size": f"{args.size[0]}x{args.size[1]}", "repeats": args.repeats, "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
