"""How seamless is a split video's join, against the warm-up before each segment (``K`` frames); and what a segment
costs beside the frames it writes.

For one clip and one artifact, with the consistency stage at stylize-video's default level, in one process:

* the single-worker run (:func:`inference.app.convert.stylize_file`, lossless ``crf 0`` so that the encoder adds
  nothing to the figures);
* for each ``K`` in ``--warmups``: the same clip cut into segments of ``--segment`` seconds, each segment stylized
  after ``K`` warm-up frames (:func:`inference.app.segment_run.stylize_segment`) and joined
  (:func:`inference.app.segment_join.join_segments`).

Figures, per ``K``:

* **join ratio**: the mean absolute change (grey levels) between the last frame before a join and the first after it,
  over the median change between neighbouring frames elsewhere in the same output (the target: <= 1.2); the worst
  join and the mean over joins;
* the same ratio for the single run at the same positions (what the content itself changes there);
* **warping error** (DIS flow of the input, :func:`styletrain.temporal.loss.warping_error`) of the whole output and
  of the pairs across joins only, beside the single run's;
* the mean absolute difference to the single run at the first written frame of a segment and 8 frames later;
* time: seconds per segment and the warm-up's share of it.

Usage (from the repository root; the machine may be shared, so times are for ratios within one run)::

    python -m bench.split_join --clip ../shared/data/videos/big_buck_bunny_5s.mp4 \
        --model docs/models/starry_night+great_wave-hed-light.safetensors

Results: a table on stdout and ``bench/results/split-join-cpu.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.environment import shared_clip
from inference.app.cli import DEFAULT_CONSISTENCY
from inference.app.convert import stylize_file
from inference.app.file_options import FileOptions
from inference.app.jobs import load_stylizer
from inference.app.segment_join import join_segments
from inference.app.segment_run import stylize_segment
from inference.app.split_plan import plan_segments, probe_frames
from inference.io.encode_options import EncodeOptions
from inference.io.trim import TrimOptions
from inference.io.video_reader import VideoSource

DEFAULT_CLIP = shared_clip("big_buck_bunny_5s.mp4")
DEFAULT_MODEL = Path("docs/models/starry_night+great_wave-hed-light.safetensors")


def decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def changes(frames: list[np.ndarray]) -> np.ndarray:
    """Mean absolute change between neighbouring frames, grey levels: ``[T - 1]``, entry t for pair (t, t+1)."""
    return np.array(
        [np.abs(b.astype(np.float32) - a.astype(np.float32)).mean() for a, b in zip(frames, frames[1:], strict=False)]
    )


def pair_errors(frames_out: list[np.ndarray], fws, bws) -> np.ndarray:
    """The warping error of every neighbouring pair (``[T - 1]``)."""
    import torch

    from styletrain.temporal.loss import pair_warping_error

    def chw(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(2, 0, 1).float().unsqueeze(0) / 255

    def flow(f: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(f, np.float32)).permute(2, 0, 1).unsqueeze(0)

    return np.array(
        [
            float(pair_warping_error(chw(frames_out[t]), chw(frames_out[t + 1]), flow(fws[t]), flow(bws[t])))
            for t in range(len(frames_out) - 1)
        ]
    )


def join_figures(out: list[np.ndarray], joins: list[int], errors: np.ndarray) -> dict:
    """Change across each join (pair ``(j - 1, j)``) against the median change of the other pairs."""
    d = changes(out)
    pairs = [j - 1 for j in joins]
    rest = np.delete(d, pairs)
    median = float(np.median(rest))
    at = d[pairs]
    return {
        "median_change": round(median, 3),
        "join_changes": [round(float(x), 3) for x in at],
        "worst_join_ratio": round(float(at.max() / median), 3),
        "mean_join_ratio": round(float(at.mean() / median), 3),
        "warping_error": round(float(errors.mean()), 6),
        "warping_error_at_joins": round(float(errors[pairs].mean()), 6),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--max-side", type=int, default=320, help="stylize at this size (default 320)")
    p.add_argument("--segment", type=float, default=1.0, help="seconds per segment (default 1)")
    p.add_argument("--warmups", default="0,8,16,24,32,48", help="warm-up frames K to compare")
    p.add_argument("--consistency", type=float, default=DEFAULT_CONSISTENCY)
    p.add_argument("--out", type=Path, default=Path("bench/results/split-join-cpu.json"))
    args = p.parse_args(argv)
    import torch

    from styletrain.temporal.loss import clip_flows

    torch.set_num_threads(1)  # one core per worker, as a two-worker split on this machine would have
    trim = TrimOptions(max_side=args.max_side)
    encode = EncodeOptions(crf=0, codec="h264", audio=False)
    file_options = FileOptions(trim=trim, encode=encode)
    stylizer = load_stylizer(str(args.model), device="cpu", consistency=args.consistency)
    frames = probe_frames(args.clip)
    source = VideoSource(args.clip, trim.resize(True))
    source.close()
    inputs = [f.array for f in VideoSource(args.clip, trim.resize(True)).frames()]
    fws, bws = clip_flows(inputs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0, c0 = time.perf_counter(), time.process_time()
        stylize_file(stylizer, args.clip, tmp / "single.mp4", file_options)
        single_s, single_cpu = time.perf_counter() - t0, time.process_time() - c0
        single = decode(tmp / "single.mp4")
        single_errors = pair_errors(single, fws, bws)
        for k in [int(x) for x in args.warmups.split(",")]:
            segments = plan_segments(frames, args.segment, warmup=k)
            joins = list(np.cumsum([s.frames for s in segments])[:-1])
            parts, seconds = [], []
            c0 = time.process_time()
            for seg in segments:
                t = time.perf_counter()
                r = stylize_segment(stylizer, args.clip, tmp / f"k{k}-{seg.file_name}", seg, file_options)
                seconds.append(time.perf_counter() - t)
                parts.append(r.output)
            cpu = time.process_time() - c0
            t = time.perf_counter()
            join_segments(parts, tmp / f"k{k}.mp4", source.info, encode)
            join_s = time.perf_counter() - t
            out = decode(tmp / f"k{k}.mp4")
            assert len(out) == len(single), (len(out), len(single))
            row = {"warmup": k, "segments": len(segments), **join_figures(out, joins, pair_errors(out, fws, bws))}
            at_single = join_figures(single, joins, single_errors)
            row["single_at_joins"] = at_single["mean_join_ratio"]
            row["single_worst_at_joins"] = at_single["worst_join_ratio"]
            diff = [np.abs(out[i].astype(np.float32) - single[i]).mean() for i in range(len(out))]
            row["diff_to_single_at_join"] = round(float(np.mean([diff[j] for j in joins])), 3)
            row["diff_to_single_8_after"] = round(float(np.mean([diff[min(j + 8, len(diff) - 1)] for j in joins])), 3)
            row["seconds_per_segment"] = round(statistics.mean(seconds), 3)
            row["segments_total_s"] = round(sum(seconds), 3)
            row["join_s"] = round(join_s, 3)
            # CPU seconds (this process, every thread): steadier than wall time on a shared machine.
            row["segments_cpu_s"] = round(cpu, 3)
            row["extra_cpu_per_segment_s"] = round((cpu - single_cpu) / len(segments), 4)
            rows.append(row)
    result = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} cores, shared with other jobs; load {os.getloadavg()[0]:.1f})",
        "clip": str(args.clip),
        "frames": len(frames.pts),
        "size": f"{source.info.width}x{source.info.height}",
        "model": str(args.model),
        "consistency": args.consistency,
        "segment_s": args.segment,
        "single_run_s": round(single_s, 3),
        "single_run_cpu_s": round(single_cpu, 3),
        "single_warping_error": round(float(single_errors.mean()), 6),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['clip']}: {result['frames']} frames at {result['size']}, stage {args.consistency}, "
          f"single run {single_s:.1f}s, warping error {result['single_warping_error']:.5f}")  # fmt: skip
    print("  K  joins  worst/median  mean/median  single: worst, mean  warp  warp@joins  diff@join  diff+8  s/segment")
    for r in rows:
        print(
            f"{r['warmup']:>3}  {r['segments'] - 1:>5}  {r['worst_join_ratio']:>12.2f}  {r['mean_join_ratio']:>11.2f}  "
            f"{r['single_worst_at_joins']:>13.2f}, {r['single_at_joins']:.2f}  "
            f"{r['warping_error']:.5f}  {r['warping_error_at_joins']:.5f}  "
            f"{r['diff_to_single_at_join']:>9.2f}  {r['diff_to_single_8_after']:>6.2f}  "
            f"{r['seconds_per_segment']:>9.2f}"
        )


if __name__ == "__main__":
    main()
