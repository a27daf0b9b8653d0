"""The plan for splitting one long video across workers: where each segment starts and ends, and its warm-up.

The plan is made from the packets alone (demuxed, not decoded: seconds for a two-hour film), so it knows every
frame's timestamp and which frames are keyframes. Cuts fall on keyframes near the ideal positions, so that a worker
seeks straight to its segment; where no keyframe is near (long GOPs), a cut falls on the frame nearest the ideal
position instead, and the worker decodes from the keyframe before it (decode-accurate, a little more decoding).

Each segment is a job for the existing executors (:class:`~inference.app.jobs.Job` with a ``segment``): the worker
decodes from ``warmup_pts`` and runs the network and the consistency stage over the ``warmup`` frames before
``start_pts`` without writing them, so the history at the join is close to what a single run would have there
(:mod:`inference.app.segment_run`). The segments are joined by :mod:`inference.app.segment_join`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from inference.core.errors import MediaError, OptionError

#: Frames of warm-up before every join, chosen from bench/split_join.py (bench/results/split-join-cpu.json, stage at
#: 0.8): the change across a join falls from 2.9x the median neighbour change (K=0) to 1.19x (16), 1.12x (24), 1.06x
#: (32), the single run itself having 1.02x at those frames. 24 meets the 1.2x target with a margin; its cost, 24
#: frames through decode, network and stage but not the encoder, is under 1% of a segment of a few minutes.
DEFAULT_WARMUP = 24
#: ``--split auto``: the shortest segment worth a job (the model loads once per worker, not per segment, but every
#: segment pays its warm-up and a seek).
MIN_SEGMENT_S = 5.0
#: ``--split auto``: segments per worker, so that a faster worker takes more and a lost segment costs little.
SEGMENTS_PER_WORKER = 4
#: ``--split auto`` on a Ray cluster (whose size is known only once joined): segments of this length, so that a
#: two-hour film makes 120 jobs, enough for a cluster of a few dozen workers.
RAY_SEGMENT_S = 60.0
#: ``--split auto`` splits a file only from this length on: below it, one worker finishes before a split pays back.
AUTO_MIN_SECONDS = 30.0


@dataclass(frozen=True)
class Segment:
    """One part of a video, in the stream's own timestamps (``time_base`` units).

    Attributes:
        index: 0-based position in the output.
        start_pts: The first frame written.
        end_pts: The first frame of the next segment (not written here), or ``None`` for the last segment.
        warmup_pts: The first frame decoded and stylized (``<= start_pts``): ``warmup`` frames before the start.
        frames: Frames written.
        warmup: Frames stylized before ``start_pts`` and not written.
        time_base: Seconds per timestamp unit.
        origin_pts: The stream's first timestamp (seconds for :class:`~inference.io.video_reader.VideoSource`'s
            ``start`` count from it).
    """

    index: int
    start_pts: int
    end_pts: int | None
    warmup_pts: int
    frames: int
    warmup: int
    time_base: Fraction
    origin_pts: int = 0

    @property
    def warmup_seconds(self) -> float:
        """``warmup_pts`` as seconds from the stream start (what ``VideoSource(start=...)`` takes)."""
        return float((self.warmup_pts - self.origin_pts) * self.time_base)

    @property
    def start_seconds(self) -> float:
        """Where the segment starts, in seconds from the stream start."""
        return float((self.start_pts - self.origin_pts) * self.time_base)

    @property
    def file_name(self) -> str:
        """The segment's file in the segment folder."""
        return f"segment_{self.index:05d}.nut"


@dataclass(frozen=True)
class StreamFrames:
    """Every frame's timestamp of a video stream, from its packets.

    Attributes:
        pts: Presentation timestamps in display order.
        keyframes: The presentation timestamps of keyframes, ascending.
        time_base: Seconds per timestamp unit.
        origin_pts: The stream's start time.
    """

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction

    @property
    def origin_pts(self) -> int:
        return self.pts[0]

    @property
    def seconds(self) -> float:
        """From the first frame to the last (0 for one frame)."""
        return float((self.pts[-1] - self.pts[0]) * self.time_base)


def probe_frames(path: str | Path) -> StreamFrames:
    """Read the timestamps and keyframes of ``path``'s first video stream from its packets (nothing is decoded).

    Raises:
        MediaError: Not a video, no video stream, or packets without timestamps (raw ``.h264``: not splittable).
    """
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise MediaError(f"{path}: not a video ({str(exc).splitlines()[0]})") from None
    with container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if packet.pts is None:
                raise MediaError(f"{path}: video packets without timestamps cannot be split (use `split` off)",
                                 mentions=("split",))  # fmt: skip
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
        time_base = stream.time_base
    if not pts:
        raise MediaError(f"{path}: no video frames")
    return StreamFrames(sorted(pts), sorted(keys), Fraction(time_base))


def parse_split(text: str) -> str | float:
    """``--split``'s value: ``"auto"``, ``"off"`` or a segment length in seconds (> 0).

    Raises:
        OptionError: Anything else (naming the `split` field).
    """
    text = text.strip().lower()
    if text in ("auto", "off"):
        return text
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise OptionError("split", f": expected auto, off or a segment length in seconds (> 0), got {text!r}")
    return seconds


def segment_seconds(
    split: str | float, seconds: float, workers: int | None, *, cpu_only: bool = False
) -> tuple[float | None, str]:
    """The segment length ``split`` asks for, and why, as a phrase for the log.

    Args:
        split: ``"auto"``, ``"off"`` or seconds (see :func:`parse_split`).
        seconds: The file's length.
        workers: How many segments can run at once; ``None``: a Ray cluster (segments of :data:`RAY_SEGMENT_S`).
        cpu_only: The workers are CPU workers of this machine. They share its cores, which one worker already
            keeps busy (the network's threads and the encoder's), so ``auto`` does not split: the warm-up frames
            and a second model load would only add work (measured by ``bench/split_long.py``).

    Returns:
        ``(seconds per segment, reason)``; ``None`` seconds: do not split.
    """
    if split == "off":
        return None, "--split off"
    if split != "auto":
        if split >= seconds:
            return None, f"--split {split:g}s is not shorter than the file ({seconds:.1f}s)"
        return float(split), f"--split {split:g}"
    if workers is not None and workers < 2:
        return None, "one worker: a split would only add warm-up frames (give --workers or --devices to split)"
    if seconds < AUTO_MIN_SECONDS:
        return None, f"{seconds:.1f}s is short (auto splits from {AUTO_MIN_SECONDS:g}s): one worker runs it"
    if cpu_only and workers is not None:
        return None, "CPU workers share this machine's cores, which one worker already uses (--split SECONDS to split)"
    if workers is None:
        return RAY_SEGMENT_S, f"auto: {seconds:.1f}s on a Ray cluster, {RAY_SEGMENT_S:g}s segments"
    length = max(MIN_SEGMENT_S, seconds / (workers * SEGMENTS_PER_WORKER))
    return length, f"auto: {seconds:.1f}s over {workers} workers, {SEGMENTS_PER_WORKER} segments per worker"


def plan_segments(frames: StreamFrames, length: float, warmup: int = DEFAULT_WARMUP) -> list[Segment]:
    """Cut ``frames`` into segments of about ``length`` seconds, at keyframes where one is near.

    A cut goes to the keyframe nearest each multiple of ``length`` when one lies within a quarter of ``length``;
    else to the frame nearest it. Cuts never repeat and every segment holds at least one frame.

    Args:
        frames: From :func:`probe_frames`.
        length: Seconds per segment (> 0).
        warmup: Frames stylized before each segment's start and not written (the first segment has none).

    Returns:
        The segments in order; together they hold every frame once.
    """
    pts, tb = frames.pts, frames.time_base
    step = max(1, int(round(length / tb)))
    slack = step // 4
    cuts = [0]  # indices into pts where a segment starts
    target = pts[0] + step
    while target < pts[-1]:
        cut = _cut_index(pts, frames.keyframes, target, slack)
        if cut > cuts[-1]:
            cuts.append(cut)
        target = max(target + step, pts[cuts[-1]] + step // 2)
    segments = []
    for n, first in enumerate(cuts):
        last = cuts[n + 1] if n + 1 < len(cuts) else len(pts)
        lead = min(warmup, first)
        end = pts[last] if last < len(pts) else None
        segments.append(Segment(n, pts[first], end, pts[first - lead], last - first, lead, tb, pts[0]))
    return segments


def _cut_index(pts: list[int], keyframes: list[int], target: int, slack: int) -> int:
    """The index in ``pts`` of the keyframe nearest ``target`` within ``slack``, else of the frame nearest it."""
    k = bisect.bisect_left(keyframes, target)
    near = [keyframes[i] for i in (k - 1, k) if 0 <= i < len(keyframes) and abs(keyframes[i] - target) <= slack]
    if near:
        return bisect.bisect_left(pts, min(near, key=lambda p: abs(p - target)))
    i = bisect.bisect_left(pts, target)
    if i > 0 and (i == len(pts) or target - pts[i - 1] <= pts[i] - target):
        i -= 1
    return i


def describe_plan(segments: list[Segment], frames: StreamFrames, reason: str) -> list[str]:
    """The plan as log lines: the length chosen and why, then one line per segment."""
    keyed = set(frames.keyframes)
    lines = [
        f"split into {len(segments)} segments of about {_mean_seconds(segments, frames):.1f}s ({reason}); "
        f"{segments[-1].warmup if len(segments) > 1 else 0} warm-up frames before each join"
    ]
    for seg in segments:
        where = "keyframe" if seg.start_pts in keyed else "decode-accurate"
        lines.append(
            f"  segment {seg.index}: {seg.start_seconds:.2f}s, {seg.frames} frames, {seg.warmup} warm-up ({where})"
        )
    return lines


def _mean_seconds(segments: list[Segment], frames: StreamFrames) -> float:
    return frames.seconds / len(segments) if segments else 0.0
