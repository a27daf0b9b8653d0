"""A 60 s clip with audio and variable frame rate: ``stylize-video --split`` on two CPU workers beside one worker.

Generates the clip (a pan over a textured picture, frame gaps of 1 to 3 frame durations, an AAC tone), then runs, in
one process tree and alternating:

* one worker: ``stylize-video clip.mp4 -o one.mp4 --split off``;
* two workers: ``stylize-video clip.mp4 -o two.mp4 --devices cpu --workers 2 --split S``, where ``S`` is the
  segment length ``--split auto`` picks for two workers with hosts of their own (for CPU workers of one machine auto
  does not split: they share the cores);

both lossless (``--crf 0``) with the consistency stage off, so that the outputs can be compared exactly: frame
count, every timestamp, the audio packets, the frames themselves. Then the wall-time ratio (two workers / one), the
probe and join times, and the same split with the stage on (change across the joins against the median change).

Usage (the machine may be shared; the ratio is measured side by side in one run)::

    python -m bench.split_long --model docs/models/starry_night+great_wave-hed-light.safetensors

Results: a summary on stdout and ``bench/results/split-long-cpu.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

DEFAULT_MODEL = Path("docs/models/starry_night+great_wave-hed-light.safetensors")


def write_clip(path: Path, seconds: float, size: tuple[int, int]) -> Path:
    """A variable-frame-rate H.264 clip (24 fps base, gaps of 1-3 frames, a keyframe every 48) with an AAC tone."""
    import av

    rng = np.random.default_rng(0)
    width, height = size
    ticks, t = [], 0
    while t < seconds * 24:
        ticks.append(t)
        t += int(rng.choice([1, 1, 1, 2, 3]))
    canvas = (rng.random((height + len(ticks) + 1, width + 2 * len(ticks) + 1, 3)) * 255).astype(np.uint8)
    canvas = np.ascontiguousarray(np.cumsum(canvas, axis=1, dtype=np.uint32) // 4 % 256, dtype=np.uint8)
    tb = Fraction(1, 24)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = tb
        video.options = {"crf": "18", "g": "48", "keyint_min": "48", "sc_threshold": "0"}
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for i, tick in enumerate(ticks):
            frame = av.VideoFrame.from_ndarray(canvas[i : i + height, 2 * i : 2 * i + width], format="rgb24")
            frame.pts, frame.time_base = tick, tb
            out.mux(video.encode(frame))
        out.mux(video.encode())
        total = int(round((ticks[-1] + 1) / 24 * 44100))
        tone = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(total) / 44100)).astype(np.float32)
        for start in range(0, total, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())
    return path


def facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        video = {"pts": [f.pts for f in frames], "arrays": [f.to_ndarray(format="rgb24") for f in frames]}
    with av.open(str(path)) as c:
        video["audio"] = [p.pts for p in c.demux(audio=0) if p.size]
    return video


CPU: list[float] = []  # CPU seconds (user + system) of each run's process tree, in order


def run(args: list[str]) -> tuple[float, str]:
    """Run stylize-video; ``(wall seconds, stderr)``, its CPU seconds appended to :data:`CPU`."""
    import resource

    cmd = [sys.executable, "-c", "import sys; from inference.app.cli import main; sys.exit(main())", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return time.perf_counter() - t0, proc.stderr


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--size", default="160x96")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench/results/split-long-cpu.json"))
    args = p.parse_args(argv)
    from inference.app.split_plan import DEFAULT_WARMUP, plan_segments, probe_frames, segment_seconds

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "clip.mp4", args.seconds, (width, height))
        frames = probe_frames(clip)
        # What --split auto chooses for two workers with hosts of their own (GPUs, Ray nodes); for CPU workers of one
        # machine auto does not split (they share its cores), so the length is given explicitly here.
        length, _ = segment_seconds("auto", frames.seconds, 2)
        split = ["--devices", "cpu", "--workers", "2", "--split", f"{length:.3f}"]
        common = ["-m", str(args.model), "--crf", "0", "--consistency", "0", "--overwrite"]
        one_s, two_s, log = [], [], ""
        for _ in range(args.repeats):
            one_s.append(run([str(clip), "-o", str(tmp / "one.mp4"), "--split", "off", *common])[0])
            seconds, log = run([str(clip), "-o", str(tmp / "two.mp4"), *split, *common])
            two_s.append(seconds)
        one, two = facts(tmp / "one.mp4"), facts(tmp / "two.mp4")
        identical = len(one["arrays"]) == len(two["arrays"]) and all(
            np.array_equal(a, b) for a, b in zip(one["arrays"], two["arrays"], strict=True)
        )
        _, stage_log = run([str(clip), "-o", str(tmp / "stage.mp4"), *split,
                            "-m", str(args.model), "--crf", "0", "--overwrite"])  # fmt: skip
        stage = facts(tmp / "stage.mp4")
        t0 = time.perf_counter()
        probe_frames(clip)
        probe_s = time.perf_counter() - t0
        joins = list(np.cumsum([s.frames for s in plan_segments(frames, length, DEFAULT_WARMUP)])[:-1])
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, shared with other jobs (load {os.getloadavg()[0]:.1f} at the end)",
        "clip": f"{args.seconds:g}s VFR {args.size}, {len(one['pts'])} frames, AAC",
        "model": str(args.model),
        "plan": [line for line in log.splitlines() if "split" in line or "segment" in line][:1],
        "same_frame_count": len(one["pts"]) == len(two["pts"]),
        "same_timestamps": one["pts"] == two["pts"],
        "same_audio_packets": one["audio"] == two["audio"] and len(one["audio"]) > 0,
        "identical_frames_crf0_stage_off": identical,
        "one_worker_s": [round(s, 2) for s in one_s],
        "two_workers_s": [round(s, 2) for s in two_s],
        "ratio_two_over_one": round(min(two_s) / min(one_s), 3),
        # CPU seconds of every process: what the split adds in work (warm-up, second model load, join), and the wall
        # ratio two perfectly parallel workers would reach: (CPU of the split / 2) / CPU of one worker.
        "cpu_one_worker_s": [round(c, 2) for c in CPU[0 : 2 * args.repeats : 2]],
        "cpu_two_workers_s": [round(c, 2) for c in CPU[1 : 2 * args.repeats : 2]],
        "cpu_ratio_two_over_one": round(min(CPU[1 : 2 * args.repeats : 2]) / min(CPU[0 : 2 * args.repeats : 2]), 3),
        "probe_s": round(probe_s, 4),
        "stage_on_plan": [line for line in stage_log.splitlines() if "split into" in line or "frames from" in line],
        "stage_on_joins": join_ratio(stage["arrays"], [int(j) for j in joins]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def join_ratio(frames: list[np.ndarray], joins: list[int]) -> dict:
    """The mean absolute change across each join (pair ``(j - 1, j)``) over the median change of the other pairs."""
    d = np.array([np.abs(b.astype(np.float32) - a).mean() for a, b in zip(frames, frames[1:], strict=False)])
    pairs = [j - 1 for j in joins]
    median = float(np.median(np.delete(d, pairs)))
    return {
        "joins": len(joins),
        "median_change": round(median, 3),
        "worst_join_ratio": round(float(d[pairs].max() / median), 3),
        "mean_join_ratio": round(float(d[pairs].mean() / median), 3),
    }


if __name__ == "__main__":
    main()
