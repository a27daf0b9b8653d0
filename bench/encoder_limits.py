"""Smallest frame sizes each exposed encoder takes: the evidence behind ``inference/io/encoder_limits.py``.

Every probe encodes a few frames of one size in a fresh subprocess (libx265 corrupts its heap below its limits and
glibc then aborts the process, so an in-process probe would die with the first bad size). A size passes when the
subprocess exits 0, glibc's strict heap checks (``GLIBC_TUNABLES=glibc.malloc.check=3``) found nothing, and the
output decodes back to every frame at that size.

For each encoder and pixel format the script scans widths at a safe height and heights at a safe width, from 1 up to
``--max``, and reports the smallest passing width and height, plus every failing size above it (so a gap or a
multiple shows). Slow: one process start per size.

Usage (from the repository root)::

    python -m bench.encoder_limits --max 80

Results: a table on stdout and ``bench/results/encoder-limits.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.environment import environment

_HERE = Path(__file__).resolve().parent
# (encoder, container, pixel formats): every software encoder --codec's families resolve to, plus GIF.
ENCODERS = [
    ("libx264", "mp4", ["yuv420p", "yuv444p"]),
    ("libx265", "mp4", ["yuv420p", "yuv444p"]),
    ("libvpx-vp9", "webm", ["yuv420p", "yuv444p"]),
    ("libsvtav1", "mp4", ["yuv420p", "yuv420p10le"]),
    ("libaom-av1", "mp4", ["yuv420p"]),
    ("gif", "gif", ["rgb8"]),
]
_SAFE = 96  # A size every encoder takes, held fixed while the other dimension is scanned.

# The child encodes the way VideoSink does: frame threads on every core for x264/x265 (the small-size heap
# corruption in libx265 shows only with them), CRF 18 at the medium preset, ten frames so frame threads overlap.
_CHILD = r"""
import io, sys
import av, numpy as np
name, fmt, pix, w, h = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
buf = io.BytesIO()
with av.open(buf, "w", format=fmt) as out:
    s = out.add_stream(name, rate=25)
    s.width, s.height, s.pix_fmt = w, h, pix
    if name in ("libx264", "libx265"):
        s.codec_context.thread_type, s.codec_context.thread_count = "FRAME", 0
        s.options = {"crf": "18", "preset": "medium"}
    rng = np.random.default_rng(0)
    for i in range(10):
        f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
        f = f.reformat(format=pix)
        f.pts = i
        out.mux(s.encode(f))
    out.mux(s.encode())
buf.seek(0)
with av.open(buf) as c:
    sizes = [(f.width, f.height) for f in c.decode(video=0)]
assert len(sizes) == 10 and all(sz == (w, h) for sz in sizes), sizes
"""
# glibc's checking malloc (2.34+: the debug library must be preloaded) aborts at the first heap corruption, which
# the default allocator may let pass silently.
_MALLOC_DEBUG = "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"


def probe(name: str, fmt: str, pix: str, w: int, h: int) -> str:
    """``"ok"``, ``"error"`` (a Python exception: the encoder refused cleanly) or ``"crash"`` (killed by a signal)."""
    env = dict(os.environ, GLIBC_TUNABLES="glibc.malloc.check=3")
    if os.path.exists(_MALLOC_DEBUG):
        env["LD_PRELOAD"] = _MALLOC_DEBUG
    try:
        r = subprocess.run(
            [sys.executable, "-c", _CHILD, name, fmt, pix, str(w), str(h)],
            capture_output=True,
            timeout=60,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return "hang"
    if r.returncode == 0:
        return "ok"
    return "crash" if r.returncode < 0 or r.returncode > 1 else "error"


def available(name: str) -> bool:
    """Whether this FFmpeg build has encoder ``name``."""
    import av

    try:
        av.Codec(name, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError or ValueError depending on the name.
        return False
    return True


def scan(name: str, fmt: str, pix: str, top: int, jobs: int) -> dict:
    """Results of every width (height fixed) and every height (width fixed) from 1 to ``top``."""
    step = 2 if "420" in pix else 1  # 4:2:0 needs even sizes; the pipeline never makes odd ones for it.
    values = list(range(step, top + 1, step))
    with ThreadPoolExecutor(jobs) as pool:
        widths = dict(zip(values, pool.map(lambda w: probe(name, fmt, pix, w, _SAFE), values), strict=True))
        heights = dict(zip(values, pool.map(lambda h: probe(name, fmt, pix, _SAFE, h), values), strict=True))
    res = {"width": _summary(widths), "height": _summary(heights)}
    # Both minimums at once: a limit on the area or on the smaller side would show here.
    res["corner"] = probe(name, fmt, pix, res["width"]["min"], res["height"]["min"])
    return res


def _summary(results: dict[int, str]) -> dict:
    """The smallest scanned size from which every larger one passes, and the failures (with their kind) below it."""
    failing = sorted(v for v, r in results.items() if r != "ok")
    passing = [v for v in sorted(results) if not failing or v > failing[-1]]
    return {"min": passing[0] if passing else None, "failures": {str(v): results[v] for v in failing}}


def main() -> None:
    """Probe every available encoder; print a table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=80, help="largest width/height to scan")
    ap.add_argument("--jobs", type=int, default=2, help="probes at once")
    ap.add_argument("--out", type=Path, default=_HERE / "results" / "encoder-limits.json")
    args = ap.parse_args()
    import av

    found: dict = {}
    for name, fmt, pix_fmts in ENCODERS:
        if not available(name):
            print(f"{name}: not in this FFmpeg build, skipped")
            continue
        for pix in pix_fmts:
            res = scan(name, fmt, pix, args.max, args.jobs)
            found.setdefault(name, {})[pix] = res
            w, h = res["width"], res["height"]
            print(f"{name:11s} {pix:12s} min width {w['min']:3d} min height {h['min']:3d} corner {res['corner']}")
            print(f"    failures: width {w['failures']} height {h['failures']}", flush=True)
    record = {
        "what": "smallest width and height each encoder encodes without error or crash (10 frames, decoded back)",
        **environment("cpu"),
        "pyav": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "scan": {"max": args.max, "fixed_other_side": _SAFE},
        "encoders": found,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
