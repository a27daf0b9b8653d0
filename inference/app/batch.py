"""Many inputs in one ``stylize-video`` run: which files, where their outputs go, on which devices, and the summary.

Several inputs, or one folder holding videos (and no images, which would make it a folder of frames), make a
batch: every input gets an output of the same stem in the ``-o`` folder. This module is the planner: inputs,
output names, ``--skip-existing``, the line per file, the summary and the exit status. An executor runs the files:
:mod:`inference.app.local_executor` (this machine's devices, the default) or :mod:`inference.app.ray_executor` (a Ray
cluster). A file that fails is reported and the others go on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from inference.app.jobs import Executor, Job, Outcome
from inference.core.errors import OptionError, UserError
from inference.io.image_reader import natural_key
from inference.io.media import IMAGE_EXTENSIONS
from inference.io.writers import VIDEO_EXTENSIONS, check_encoders

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions

log = logging.getLogger("inference")

# Extensions that mark a file in an input folder as a video to stylize (anything FFmpeg reads would do; these are
# the common ones, so that sidecar files such as subtitles or notes are not mistaken for broken videos).
INPUT_VIDEO_EXTENSIONS = VIDEO_EXTENSIONS | {".gif", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp"}
_WRITABLE = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS | {".gif"}
# Memory one worker process needs at least (torch, the network, a few frames in flight), for cap_workers.
WORKER_MEMORY = 1 << 30


def video_folder_files(path: Path) -> list[Path] | None:
    """The videos of folder ``path`` in natural order, or ``None`` when it is not a folder of videos.

    A folder with any image file in it stays a folder of frames (what ``stylize-video frames/ -o out.mp4`` reads).
    Hidden files (such as another run's ``.name.tmp-*`` outputs) are ignored.
    """
    if not path.is_dir():
        return None
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in files):
        return None
    videos = sorted((p for p in files if p.suffix.lower() in INPUT_VIDEO_EXTENSIONS), key=natural_key)
    return videos or None


def output_exists(path: Path) -> bool:
    """Whether an output is already there (an empty folder counts as absent, as for ``--overwrite``)."""
    if path.is_symlink() or path.is_file():
        return True
    return path.is_dir() and any(path.iterdir())


def is_batch(inputs: list[str]) -> bool:
    """Several inputs, or one folder of videos."""
    return len(inputs) > 1 or video_folder_files(Path(inputs[0])) is not None


def _expand(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for text in inputs:
        videos = video_folder_files(Path(text))
        if videos is not None:
            paths.extend(videos)
        elif not Path(text).exists() and any(ch in text for ch in "*?["):
            raise UserError(f"{text}: a quoted glob is one frame sequence; with several inputs let the shell expand it")
        else:
            paths.append(Path(text))
    return paths


def _output_name(src: Path, ext: str | None) -> str:
    if ext is None:
        suffix = src.suffix.lower()
        ext = suffix if suffix in _WRITABLE and not src.is_dir() else ".mp4"
    return (src.name if src.is_dir() else src.stem) + ext


def plan_jobs(inputs: list[str], output: str, ext: str | None = None) -> list[Job]:
    """Pair every input file with its output in folder ``output``.

    Args:
        inputs: Files, folders of videos, or folders of frames (each one sequence).
        output: The output folder (created later, when the run starts).
        ext: Output extension such as ``".mp4"``; ``None`` keeps each input's extension where it can be written
            (else ``.mp4``).

    Returns:
        The jobs in input order.

    Raises:
        UserError: ``output`` is a file, or two inputs would write the same output, or an output would replace
            its own input.
    """
    for text in [*inputs, output]:
        if "://" in text:
            # Workers open paths, not URLs: object storage is read through a mount every node (or this one) sees.
            raise UserError(
                f"{text}: URLs are not read or written directly; mount the bucket (e.g. s3fs, gcsfuse) and pass the "
                "mounted path"
            )
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: with several inputs -o must be a folder, and this is a file")
    if not out.exists() and out.suffix.lower() in _WRITABLE:
        raise UserError(f"{out}: with several inputs -o must be a folder (outputs are named after the inputs)")
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src in _expand(inputs):
        dst = out / _output_name(src, ext)
        key = Path(os.path.abspath(dst))
        if key in seen:
            raise UserError(
                f"{seen[key]} and {src} would both be written to {dst}; use different names or `ext`", mentions=("ext",)
            )
        if Path(os.path.abspath(src)) == key:
            raise UserError(
                f"{src}: its output {dst} would replace it; choose another `output` folder or `ext`",
                mentions=("output", "ext"),
            )
        seen[key] = src
        jobs.append(Job(src, dst))
    return jobs


def worker_devices(spec: str | None, device: str = "auto", workers: int = 1) -> list[str]:
    """Resolve ``--devices`` into one device name per worker process.

    Args:
        spec: Comma-separated torch devices (``"cuda:0,cuda:1"``, ``"cpu"``, ``"mps"``); ``"cuda"`` means every
            visible CUDA device. ``None``: the ``--device`` given, else every visible CUDA device, else the
            device ``"auto"`` picks (MPS or the CPU).
        device: The single-file ``--device`` option.
        workers: Worker processes per device.

    Returns:
        E.g. ``["cuda:0", "cuda:0", "cuda:1", "cuda:1"]`` for two GPUs and ``workers=2``.

    Raises:
        UserError: An unknown or unavailable device, or a CUDA index that does not exist.
    """
    import torch

    from inference.core.devices import resolve_device

    if spec is None:
        names = [device] if device != "auto" else ["cuda" if torch.cuda.is_available() else str(resolve_device())]
    else:
        names = [name.strip() for name in spec.split(",") if name.strip()]
        if not names:
            raise OptionError("devices", f": expected devices such as cuda:0,cuda:1 or cpu, got {spec!r}")
    found: list[str] = []
    for name in names:
        if name.startswith("cpu:"):
            raise OptionError(
                "devices",
                f"{name}: for several CPU workers use `devices` cpu `workers` N",
                mentions=("devices", "workers"),
            )
        dev = resolve_device(name)
        count = torch.cuda.device_count() if dev.type == "cuda" else 0
        if dev.type == "cuda" and dev.index is None:
            found += [f"cuda:{i}" for i in range(count)]
        elif dev.type == "cuda" and dev.index >= count:
            raise OptionError("devices", f"{name}: no such device ({count} CUDA devices visible)")
        else:
            found.append(str(dev))
    return [name for name in found for _ in range(workers)]


def format_line(done: int, total: int, job: Job, outcome: Outcome) -> str:
    """The progress line of one finished file, e.g. ``[2/5] a.mp4 -> out/a.mp4: 240 frames in 3.1s (...)``."""
    head = f"[{done}/{total}] {job.src}"
    if outcome.status == "skipped":
        return f"{head}: skipped, {job.dst} exists"
    if outcome.status == "failed":
        return f"{head}: failed: {outcome.message}"
    fps = outcome.frames / outcome.seconds if outcome.seconds > 0 else 0.0
    return (
        f"{head} -> {job.dst}: {outcome.frames} frames in {outcome.seconds:.1f}s ({fps:.1f} frames/s) "
        f"on {outcome.device}"
    )


def summarize(jobs: list[Job], outcomes: list[Outcome], seconds: float, *, quiet: bool) -> int:
    """Print the summary (and one ``error:`` line per failed file) on stderr; return the exit status (0 or 2)."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("written", "skipped", "failed")}
    if not quiet:
        print(
            f"{len(jobs)} files in {seconds:.1f}s: {counts['written']} written, {counts['skipped']} skipped, "
            f"{counts['failed']} failed",
            file=sys.stderr,
        )
    for outcome in outcomes:
        if outcome.status == "failed":
            print(f"error: {outcome.message}", file=sys.stderr)
    return 2 if counts["failed"] else 0


def run_batch(
    jobs: list[Job],
    make_executor: Callable[[list[Job]], Executor],
    file_options: FileOptions,
    *,
    skip_existing: bool = False,
    quiet: bool = False,
) -> int:
    """Stylize every job with the executor ``make_executor`` returns; print a line per file and a summary.

    Everything that can be checked is checked before the output folder is created (the encoder options here, the
    model and the workers in the executor's ``start``); a folder this run created is removed again when the run
    writes nothing into it, so a refused batch leaves nothing behind.

    Args:
        jobs: From :func:`plan_jobs`; the output folder is created if missing.
        make_executor: Called once with the jobs left to run (after ``--skip-existing``), e.g. to size its workers.
        file_options: How each file is converted (its encoder settings are checked here once, not once per file).
        skip_existing: Leave jobs whose output exists alone.
        quiet: Print only failures.

    Returns:
        The exit status: 0, or 2 when any file failed.
    """
    t0 = time.perf_counter()
    progress = _Progress(jobs, quiet)
    todo = []
    for i, job in enumerate(jobs):
        if skip_existing and output_exists(job.dst):
            progress.report(i, Outcome("skipped"))
        else:
            todo.append(i)
    if todo:
        check_encoders(file_options.encode, [jobs[i].dst for i in todo])
        executor = make_executor([jobs[i] for i in todo])
        try:
            executor.start()
            with _output_folder(jobs[todo[0]].dst.parent):
                executor.run([(i, jobs[i]) for i in todo], progress.report)
        finally:
            executor.close()
    return summarize(jobs, progress.in_order(), time.perf_counter() - t0, quiet=quiet)


class _Progress:
    """Collects outcomes and prints the ``[done/total]`` line of each file as it finishes."""

    def __init__(self, jobs: list[Job], quiet: bool) -> None:
        self.jobs, self.quiet = jobs, quiet
        self.outcomes: dict[int, Outcome] = {}

    def report(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome
        if not self.quiet:
            print(
                format_line(len(self.outcomes), len(self.jobs), self.jobs[index], outcome), file=sys.stderr, flush=True
            )

    def in_order(self) -> list[Outcome]:
        return [self.outcomes[i] for i in range(len(self.jobs))]


@contextmanager
def _output_folder(folder: Path) -> Iterator[None]:
    """Create ``folder`` if missing; remove it again afterwards if this run created it and left it empty."""
    created = not folder.exists()
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise UserError(f"{folder}: its parent folder does not exist") from None
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the output folder ({exc.strerror})") from None
    try:
        yield
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def cap_workers(
    devices: list[str], files: int, *, cores: int | None = None, free_memory: int | None = None
) -> list[str]:
    """Keep at most one worker per file, per usable CPU core (for CPU workers) and per share of free memory.

    Args:
        devices: One entry per requested worker, e.g. ``["cpu"] * 1000`` or ``["cuda:0", "cuda:0", "cuda:1"]``.
        files: Files left to stylize.
        cores: CPU cores this process may use; ``None`` reads its CPU affinity.
        free_memory: Bytes of memory available to new processes; ``None`` reads the system's.

    Returns:
        The entries kept, taken round-robin over the devices so each keeps its share. A ``warning:`` line says so
        when any is dropped.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    free = _available_memory() if free_memory is None else free_memory
    limits = {f"{files} files": files, f"{free / 2**30:.1f} GiB free memory": max(1, free // WORKER_MEMORY)}
    # Round-robin order: the n-th worker of every device before the (n+1)-th of any.
    ranked = sorted(range(len(devices)), key=lambda i: (devices[:i].count(devices[i]), i))
    kept: list[str] = []
    for i in ranked:
        if len(kept) == min(limits.values()):
            break
        if devices[i] != "cpu" or kept.count("cpu") < cores:  # CPU workers beyond the cores only contend
            kept.append(devices[i])
    if len(kept) < len(devices):
        reasons = [name for name, limit in limits.items() if limit == len(kept)]
        if kept.count("cpu") == cores < devices.count("cpu"):
            reasons.append(f"{cores} CPU cores")
        log.warning(
            "`workers`: %d worker processes lowered to %d (%s)",
            len(devices),
            len(kept),
            ", ".join(reasons),
            extra={"mentions": ("workers",)},
        )
    return kept


def _available_memory() -> int:
    """Bytes of memory available to new processes (Linux ``MemAvailable``; elsewhere free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62
