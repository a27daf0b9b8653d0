"""Batch executors side by side: the same short clips through the local executor and the Ray executor.

Ten short clips are cut from the videos in the data root's ``videos/`` folder (see ``bench/environment.py``; scaled
down; different offsets), then stylized by one planner (:func:`inference.app.batch.run_batch`) with each executor at
equal worker counts and threads:

* ``local x1``: one worker in this process, all the CPU threads; ``ray x1``: one actor with all the CPUs;
* ``local x2``: two spawned worker processes, one thread each; ``ray x2``: two actors of one CPU each.

Ray is started once before the timings (a cluster is already running when a user submits a batch); its start-up
time is reported apart. Each timing is the whole ``run_batch`` call, workers' start and model loading included.
Every configuration runs once to warm up, then ``--repeats`` times, interleaved; the median and range are reported.

Usage (from the repository root)::

    python -m bench.cluster --repeats 3

Results: a table on stdout and ``bench/results/cluster-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av

from bench.environment import data_root, environment

VIDEOS = data_root() / "videos"
RESULTS = Path(__file__).resolve().parent / "results" / "cluster-cpu.json"


def make_clips(folder: Path, count: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """Cut ``count`` clips of ``frames`` frames at ``size`` (w, h) from the shared videos, round-robin, each from
    its own offset; H.264, no audio."""
    sources = sorted(VIDEOS.glob("*.mp4"))
    clips = []
    for i in range(count):
        src = sources[i % len(sources)]
        with av.open(str(src)) as inp:
            decoded = [f for _, f in zip(range(frames * 3), inp.decode(video=0), strict=False)]
        start = (i // len(sources)) * (len(decoded) - frames) // max(1, (count - 1) // len(sources))
        start = min(start, len(decoded) - frames)
        path = folder / f"clip{i:02d}.mp4"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            for frame in decoded[start : start + frames]:
                small = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                small.pts = None
                out.mux(stream.encode(small))
            out.mux(stream.encode())
        clips.append(path)
    return clips


def make_model(path: Path, network: str) -> Path:
    """An untrained artifact of ``network`` (speed does not depend on the weights)."""
    import torch

    from inference.model.artifact import save_artifact
    from inference.model.networks import build_network

    torch.manual_seed(0)
    return save_artifact(
        path, build_network(network), style_name="bench", style_sha256="0" * 64, config={}, temporal=False
    )


def run_once(name: str, clips: list[Path], model: Path, out: Path, cpus: int) -> float:
    """One whole batch with executor ``name`` (``local x1`` ...); returns its wall time in seconds."""
    from inference.app.batch import plan_jobs, run_batch
    from inference.app.file_options import FileOptions
    from inference.app.local_executor import LocalExecutor
    from inference.app.ray_executor import RayExecutor
    from inference.engine.options import RuntimeOptions
    from inference.io.encode_options import EncodeOptions

    shutil.rmtree(out, ignore_errors=True)
    jobs = plan_jobs([str(c) for c in clips], str(out))
    workers = int(name.split("x")[1])
    file_options = FileOptions(encode=EncodeOptions(audio=False))
    if name.startswith("local"):

        def make(todo):
            return LocalExecutor(str(model), ["cpu"] * workers, RuntimeOptions(), file_options, quiet=True)
    else:

        def make(todo):
            return RayExecutor(
                str(model), RuntimeOptions(), file_options, cpus_per_worker=cpus // workers, max_workers=workers
            )

    t0 = time.perf_counter()
    status = run_batch(jobs, make, file_options, quiet=True)
    seconds = time.perf_counter() - t0
    assert status == 0 and len(list(out.iterdir())) == len(clips), f"{name}: the batch failed"
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", default="320x180")
    p.add_argument("--network", default="light")
    args = p.parse_args()
    import ray
    import torch

    cpus = len(os.sched_getaffinity(0))
    torch.set_num_threads(cpus)
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        clips = make_clips(work, args.clips, args.frames, size)
        model = make_model(work / "m.safetensors", args.network)
        # Ray runs its workers at nice 15 by default; on a machine shared with other jobs that alone would slow the
        # actors down. Equal priority for both executors: this compares executors, not schedulers.
        os.environ.setdefault("RAY_worker_niceness", "0")
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_start = time.perf_counter() - t0
        names = ["local x1", "ray x1", "local x2", "ray x2"]
        times: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.repeats + 1):  # the first round warms caches up and is dropped
            for name in names:
                seconds = run_once(name, clips, model, work / "out", cpus)
                if rep:
                    times[name].append(seconds)
                print(f"round {rep} {name}: {seconds:.2f}s", file=sys.stderr)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(times, ray_start, args, cpus)


def report(times: dict[str, list[float]], ray_start: float, args: argparse.Namespace, cpus: int) -> None:
    rows = {}
    for name, values in times.items():
        rows[name] = {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}
    for workers in (1, 2):
        local, remote = rows[f"local x{workers}"]["median_s"], rows[f"ray x{workers}"]["median_s"]
        rows[f"ray x{workers}"]["overhead_vs_local"] = (remote - local) / local
        rows[f"ray x{workers}"]["overhead_per_file_s"] = (remote - local) / args.clips
    print(f"{'executor':10} {'median s':>9} {'range s':>13} {'per file s':>10} {'overhead':>9}")
    for name, row in rows.items():
        extra = f"{row['overhead_vs_local']:+9.1%}" if "overhead_vs_local" in row else ""
        per_file = row["median_s"] / args.clips
        print(f"{name:10} {row['median_s']:9.2f} {row['min_s']:6.2f}-{row['max_s']:<6.2f} {per_file:10.3f} {extra}")
    result = {
        **environment("cpu"),
        "cpus_available": cpus,
        "load_average_after_run": os.getloadavg()[0],
        "clips": args.clips,
        "frames_per_clip": args.frames,
        "size": args.size,
        "network": args.network,
        "repeats": args.repeats,
        "ray_init_s": ray_start,
        "ray_worker_niceness": os.environ.get("RAY_worker_niceness"),
        "executors": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
