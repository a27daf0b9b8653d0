"""Run one video split across workers: the segment jobs on an executor, the redone segments, the join, the cleanup.

The segment files live in a hidden folder next to the output (``.<output name>.segments/``), with the plan they
belong to (``plan.json``). A segment whose worker died, or that failed, is redone alone in a further round (up to
``retries`` rounds; the Ray executor redoes a lost worker's job itself). When every segment is there, they are
joined into a temporary file renamed to the output, and the folder is removed.

When the run fails or is stopped (Ctrl-C, SIGTERM), the folder is removed too, unless the run was given
``skip_existing``: then the finished segments stay for the next run with ``--skip-existing``, which reuses those that
belong to the same plan (same input, segments and options). A driver killed outright (SIGKILL) cannot clean up; the
next run removes or reuses what it left, the same way.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.app.jobs import Executor, Job, Outcome
from inference.app.segment_join import join_segments
from inference.app.split_plan import Segment, StreamFrames
from inference.core.errors import MediaError, OptionError

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.io.trim import TrimOptions

log = logging.getLogger("inference")


def segment_folder(dst: Path) -> Path:
    """Where the segment files of output ``dst`` are kept while it is made (hidden, next to it)."""
    return dst.parent / f".{dst.name}.segments"


def _manifest(src: Path, segments: list[Segment], fingerprint: str) -> dict[str, Any]:
    stat = src.stat()
    return {
        "input": str(src.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "options": fingerprint,
        "segments": [[s.start_pts, s.end_pts, s.warmup_pts, s.frames] for s in segments],
    }


def prepare_folder(folder: Path, manifest: dict[str, Any], *, reuse: bool) -> int:
    """Create the segment folder; keep the segment files of an earlier run of the same plan when ``reuse``.

    Returns:
        How many finished segment files were kept.
    """
    plan = folder / "plan.json"
    if folder.is_dir():
        same = False
        try:
            same = json.loads(plan.read_text()) == manifest
        except (OSError, ValueError):
            pass
        if not (reuse and same):
            shutil.rmtree(folder)
    folder.mkdir(exist_ok=True)
    plan.write_text(json.dumps(manifest))
    for tmp in folder.glob(".*.tmp-*"):  # an earlier run's workers that were killed mid-segment
        tmp.unlink(missing_ok=True)
    return sum(1 for _ in folder.glob("segment_*.nut"))


class SegmentProgress:
    """The line per finished segment, e.g. ``[3/8] film.mp4 segment 2: 240 frames in 3.1s on cpu``."""

    def __init__(self, jobs: list[Job], quiet: bool) -> None:
        self.jobs, self.quiet = jobs, quiet
        self.outcomes: dict[int, Outcome] = {}
        self.done = 0

    def report(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome
        if outcome.status == "written":
            self.done += 1
        if self.quiet:
            return
        job = self.jobs[index]
        head = f"[{self.done}/{len(self.jobs)}] {job.src} segment {index}"
        if outcome.status == "written":
            print(f"{head}: {outcome.frames} frames in {outcome.seconds:.1f}s on {outcome.device}", file=sys.stderr)
        else:
            print(f"{head}: failed: {outcome.message}", file=sys.stderr)


def run_split(
    src: Path,
    dst: Path,
    frames: StreamFrames,
    segments: list[Segment],
    make_executor: Callable[[list[Job]], Executor],
    *,
    file_options: FileOptions,
    fingerprint: str = "",
    skip_existing: bool = False,
    rounds: int = 3,
    quiet: bool = False,
) -> int:
    """Stylize ``segments`` of ``src`` on the executor and join them into ``dst``; returns the exit status (0 or 2).

    Args:
        src: The input video.
        dst: The output video (checked already: absent, or to be replaced).
        frames: The input's frame timestamps (the join must hold every one).
        segments: From :func:`~inference.app.split_plan.plan_segments`.
        make_executor: Called once per round with the segment jobs left.
        file_options: How each segment is converted (the encoder's codec resolved for ``dst``'s container;
            ``encode.audio`` decides whether the join copies the audio).
        fingerprint: The options that change the segments' pixels (segments of another run are reused only when
            it is the same).
        skip_existing: Reuse the finished segments of an interrupted run of the same plan, and keep them if this
            run fails too.
        rounds: Rounds of redoing failed segments, the first included.
        quiet: Print errors only.
    """
    t0 = time.perf_counter()
    folder = segment_folder(dst)
    kept = prepare_folder(folder, _manifest(src, segments, fingerprint), reuse=skip_existing)
    if kept and not quiet:
        print(f"{dst}: reusing {kept} finished segments (--skip-existing)", file=sys.stderr)
    jobs = [Job(src, folder / s.file_name, s) for s in segments]
    finished = False
    try:
        failed = _run_rounds(jobs, make_executor, rounds, quiet)
        if failed:
            for index in failed:
                print(f"error: {failed[index].message}", file=sys.stderr)
            return 2
        result = _join(src, dst, [job.dst for job in jobs], frames, file_options)
        finished = True
        if not quiet:
            how = f"encoded again once ({result.reencoded})" if result.reencoded else "joined without re-encoding"
            print(
                f"{dst}: {result.frames} frames from {len(segments)} segments in {time.perf_counter() - t0:.1f}s "
                f"({how})",
                file=sys.stderr,
            )
        return 0
    finally:
        _clean(folder, keep=skip_existing and not finished, quiet=quiet)


def _run_rounds(
    jobs: list[Job], make_executor: Callable[[list[Job]], Executor], rounds: int, quiet: bool
) -> dict[int, Outcome]:
    """Run the segments whose file is missing, then redo the failed ones alone; the failures left."""
    progress = SegmentProgress(jobs, quiet)
    failed: dict[int, Outcome] = {}
    for attempt in range(rounds):
        todo = [i for i, job in enumerate(jobs) if not job.dst.is_file()]
        if not todo:
            return {}
        if attempt:
            log.warning(
                "%d segment(s) failed (%s); redoing only those (round %d of %d)",
                len(todo), ", ".join(str(i) for i in todo), attempt + 1, rounds,
            )  # fmt: skip
        executor = make_executor([jobs[i] for i in todo])
        try:
            executor.start()
            executor.run([(i, jobs[i]) for i in todo], progress.report)
        finally:
            executor.close()
        outcomes = {i: progress.outcomes.get(i, Outcome("failed", f"{jobs[i].src}: segment {i} not run")) for i in todo}
        failed = {i: outcome for i, outcome in outcomes.items() if outcome.status != "written"}
        if not failed:
            return {}
    return failed


def _join(src: Path, dst: Path, parts: list[Path], frames: StreamFrames, file_options: FileOptions):
    from inference.io.encoder_limits import size_multiples
    from inference.io.video_reader import VideoSource

    encode = file_options.encode
    resize = file_options.trim.resize(size_multiples(encode.pix_fmt) != (1, 1))
    source = VideoSource(src, resize)  # what a single run's writer is told about the source
    source.close()
    result = join_segments(parts, dst, source.info, encode)
    if result.frames != len(frames.pts):
        dst.unlink(missing_ok=True)
        raise MediaError(f"{src}: the joined output holds {result.frames} frames where the input has {len(frames.pts)}")
    return result


def _clean(folder: Path, *, keep: bool, quiet: bool) -> None:
    """Remove the segment folder, or (``keep``) only its unfinished temporaries."""
    if not folder.is_dir():
        return
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for tmp in folder.glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)
    done = sum(1 for _ in folder.glob("segment_*.nut"))
    if not quiet and done:
        print(f"{folder}: {done} finished segments kept for a rerun with --skip-existing", file=sys.stderr)


def check_splittable(trim: TrimOptions) -> None:
    """Refuse the options a split cannot honour yet (one line)."""
    if trim.start is not None or trim.duration is not None:
        raise OptionError("split", " cannot be combined with `start` or `duration` (use `split` off)",
                          mentions=("start", "duration", "split"))  # fmt: skip
