"""Many inputs in one ``stylize-video`` run: which files, where their outputs go, on which devices, and the summary.

Several inputs, or one folder holding videos (and no images, which would make it a folder of frames), make a
batch: every input gets an output of the same stem in the ``-o`` folder. The files are spread over worker
processes (:mod:`inference.worker_pool`), one or more per device, each loading the artifact once; with a single
worker they run in this process. A file that fails is reported and the others go on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import UserError
from inference.io.image_reader import natural_key
from inference.io.media import IMAGE_EXTENSIONS
from inference.io.writers import VIDEO_EXTENSIONS

# Extensions that mark a file in an input folder as a video to stylize (anything FFmpeg reads would do; these are
# the common ones, so that sidecar files such as subtitles or notes are not mistaken for broken videos).
INPUT_VIDEO_EXTENSIONS = VIDEO_EXTENSIONS | {".gif", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp"}
_WRITABLE = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS | {".gif"}


@dataclass(frozen=True)
class Job:
    """One input file and the output it goes to."""

    src: Path
    dst: Path


@dataclass(frozen=True)
class Outcome:
    """What became of one job.

    Attributes:
        status: ``"written"``, ``"skipped"`` or ``"failed"``.
        message: The error for failures (one line, naming the file), else ``""``.
        frames: Frames written.
        seconds: Wall-clock time of the file.
        device: The device that ran it.
    """

    status: str
    message: str = ""
    frames: int = 0
    seconds: float = 0.0
    device: str = ""


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
            raise UserError(f"{seen[key]} and {src} would both be written to {dst}; use different names or --ext")
        if Path(os.path.abspath(src)) == key:
            raise UserError(f"{src}: its output {dst} would replace it; choose another -o folder or --ext")
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

    from inference.stylizer import resolve_device

    if spec is None:
        names = [device] if device != "auto" else ["cuda" if torch.cuda.is_available() else str(resolve_device())]
    else:
        names = [name.strip() for name in spec.split(",") if name.strip()]
        if not names:
            raise UserError(f"--devices: expected devices such as cuda:0,cuda:1 or cpu, got {spec!r}")
    found: list[str] = []
    for name in names:
        if name.startswith("cpu:"):
            raise UserError(f"--devices {name}: for several CPU workers use --devices cpu --workers N")
        dev = resolve_device(name)
        count = torch.cuda.device_count() if dev.type == "cuda" else 0
        if dev.type == "cuda" and dev.index is None:
            found += [f"cuda:{i}" for i in range(count)]
        elif dev.type == "cuda" and dev.index >= count:
            raise UserError(f"--devices {name}: no such device ({count} CUDA devices visible)")
        else:
            found.append(str(dev))
    return [name for name in found for _ in range(workers)]


def load_stylizer(model: str, **kwargs: Any):
    """Load the artifact into a :class:`~inference.stylizer.Stylizer`, with cuDNN autotuning on CUDA.

    Args:
        model: The ``.safetensors`` artifact.
        **kwargs: Stylizer options (``device``, ``precision``, ``batch_size``, ...).
    """
    import torch

    from inference.stylizer import Stylizer, resolve_device

    if resolve_device(kwargs.get("device", "auto")).type == "cuda":
        # Every batch of a video has the same shape: let cuDNN time its algorithms once and reuse the fastest.
        torch.backends.cudnn.benchmark = True
    return Stylizer.from_artifact(model, **kwargs)


def run_job(stylizer, job: Job, options: dict[str, Any]) -> Outcome:
    """Stylize one file; any error becomes a failed :class:`Outcome` (Ctrl-C and SIGTERM still propagate)."""
    from inference.convert import stylize_file

    t0 = time.perf_counter()
    device = str(stylizer.device)
    try:
        result = stylize_file(stylizer, job.src, job.dst, **options)
    except UserError as exc:
        return Outcome("failed", str(exc), seconds=time.perf_counter() - t0, device=device)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch; the summary names it.
        text = " ".join(str(exc).split())[:300]
        message = f"{job.src}: {type(exc).__name__}: {text}"
        return Outcome("failed", message, seconds=time.perf_counter() - t0, device=device)
    return Outcome("written", frames=result.frames, seconds=result.seconds, device=device)


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
    model: str,
    devices: list[str],
    stylizer_options: dict[str, Any],
    file_options: dict[str, Any],
    *,
    skip_existing: bool = False,
    quiet: bool = False,
) -> int:
    """Stylize every job, spread over ``devices`` (one worker per entry), and print a line per file and a summary.

    Args:
        jobs: From :func:`plan_jobs`; the output folder is created if missing.
        model: The artifact, loaded once per worker.
        devices: One entry per worker, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``.
        stylizer_options: :class:`~inference.stylizer.Stylizer` options except ``device``.
        file_options: :func:`~inference.convert.stylize_file` options.
        skip_existing: Leave jobs whose output exists alone.
        quiet: Print only failures.

    Returns:
        The exit status: 0, or 2 when any file failed.
    """
    t0 = time.perf_counter()
    outcomes: dict[int, Outcome] = {}
    done = 0

    def report(index: int, outcome: Outcome) -> None:
        nonlocal done
        done += 1
        outcomes[index] = outcome
        if not quiet:
            print(format_line(done, len(jobs), jobs[index], outcome), file=sys.stderr, flush=True)

    todo = []
    for i, job in enumerate(jobs):
        if skip_existing and output_exists(job.dst):
            report(i, Outcome("skipped"))
        else:
            todo.append(i)
    if todo:
        _check_encoders([jobs[i] for i in todo], file_options)
        _dispatch(jobs, todo, model, devices, stylizer_options, file_options, report, quiet)
    return summarize(jobs, [outcomes[i] for i in range(len(jobs))], time.perf_counter() - t0, quiet=quiet)


def _check_encoders(jobs: list[Job], options: dict[str, Any]) -> None:
    """A bad ``--codec``, ``--preset``, ``--pix-fmt`` or ``--crf`` fails once, before any file, not once per file."""
    from inference.io.encoders import resolve_encoder
    from inference.io.writers import output_kind

    for ext in sorted({job.dst.suffix.lower() for job in jobs if output_kind(job.dst) == "video"}):
        resolve_encoder(
            options.get("codec"),
            ext,
            options.get("crf", 18),
            options.get("preset", "medium"),
            options.get("pix_fmt", "yuv420p"),
        )


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError:
        raise UserError(f"{folder}: its parent folder does not exist") from None
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the output folder ({exc.strerror})") from None


def _dispatch(
    jobs: list[Job],
    todo: list[int],
    model: str,
    devices: list[str],
    stylizer_options: dict[str, Any],
    file_options: dict[str, Any],
    report: Callable[[int, Outcome], None],
    quiet: bool,
) -> None:
    folder = jobs[todo[0]].dst.parent
    if len(devices) == 1:
        # One worker: no process to spawn, and Ctrl-C / SIGTERM clean up through the usual exception path.
        stylizer = load_stylizer(model, device=devices[0], **stylizer_options)
        _make_folder(folder)
        for i in todo:
            report(i, run_job(stylizer, jobs[i], file_options))
        return
    from inference.artifact import load_artifact
    from inference.worker_pool import run_pool

    load_artifact(model)  # A bad artifact fails here, once, before any folder or worker is made.
    _make_folder(folder)
    run_pool([(i, jobs[i]) for i in todo], model, devices, stylizer_options, file_options, report, quiet=quiet)
