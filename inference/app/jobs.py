"""What one file of a batch is and what became of it: shared by the planner (:mod:`inference.app.batch`) and the
executors (:mod:`inference.app.local_executor`, :mod:`inference.app.ray_executor`), so that the mechanism that runs
files never imports the policy that chooses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from inference.app.argtypes import flag
from inference.core.errors import UserError

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.app.split_plan import Segment
    from inference.engine.options import RuntimeOptions


@dataclass(frozen=True)
class Job:
    """One input file and the output it goes to; or, for a split video, one segment of it and its segment file.

    Attributes:
        src: The input.
        dst: The output (a segment file for a segment).
        segment: The part of ``src`` to stylize (:mod:`inference.app.split_plan`); ``None``: all of it.
    """

    src: Path
    dst: Path
    segment: Segment | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one job.

    Attributes:
        status: ``"written"``, ``"skipped"`` or ``"failed"``.
        message: The error for failures (one line, naming the file), else ``""``.
        frames: Frames written.
        seconds: Wall-clock time of the file.
        device: The device that ran it (with the node for remote workers, e.g. ``cpu@10.0.0.7``).
        retire: The worker's CUDA context is broken (a sticky error, see :mod:`inference.engine.cuda_errors`): every
            later file on it would fail at once, so the worker must take no more (a fresh process gets a fresh context).
    """

    status: str
    message: str = ""
    frames: int = 0
    seconds: float = 0.0
    device: str = ""
    retire: bool = False


Report = Callable[[int, Outcome], None]
"""``report(index, outcome)``: called by an executor once per task, in the order the files finish."""


class Executor(Protocol):
    """Runs planned jobs somewhere. The planner calls ``start`` (before any output folder exists: a model that
    cannot load fails there), then ``run`` once, then ``close`` whatever happened."""

    def start(self) -> None: ...

    def run(self, tasks: list[tuple[int, Job]], report: Report) -> None: ...

    def close(self) -> None: ...


def check_runtime_options(model: str, devices: Sequence[str], runtime_options: RuntimeOptions) -> None:
    """Refuse a style the artifact lacks or a precision a device cannot run, without loading the network.

    Executors load the model in other processes (or machines); this check runs in the driver first, so that a bad
    option is one line before any folder or worker exists.

    Raises:
        UserError: An unknown style or bad blend, or a precision a device does not support.
    """
    import torch

    from inference.engine.precision import resolve_precision
    from inference.model.artifact import read_metadata
    from inference.model.styles import style_names, style_weights

    meta = read_metadata(model)
    names = style_names(meta.style_names, int(meta.network_kwargs.get("num_styles", 1)))
    style_weights(runtime_options.style, names)
    for device in sorted(set(devices)):
        resolve_precision(runtime_options.precision, torch.device(device))


def load_stylizer(model: str, runtime_options: RuntimeOptions | None = None, **fields: Any):
    """Load the artifact into a :class:`~inference.engine.stylizer.Stylizer`, with cuDNN autotuning on CUDA.

    Args:
        model: The ``.safetensors`` artifact.
        runtime_options: The Stylizer's :class:`~inference.engine.options.RuntimeOptions` (``None``: the defaults).
        **fields: Fields that replace ``runtime_options``' (``device="cuda:1"``...).
    """
    import torch

    from inference.core.devices import resolve_device
    from inference.engine.options import RuntimeOptions
    from inference.engine.stylizer import Stylizer

    runtime_options = RuntimeOptions.build(runtime_options, **fields)
    if resolve_device(runtime_options.device).type == "cuda":
        # Every batch of a video has the same shape: let cuDNN time its algorithms once and reuse the fastest.
        torch.backends.cudnn.benchmark = True
    return Stylizer.from_artifact(model, runtime_options)


def run_job(stylizer, job: Job, file_options: FileOptions, device: str | None = None) -> Outcome:
    """Stylize one file; any error becomes a failed :class:`Outcome` (Ctrl-C and SIGTERM still propagate).

    Args:
        stylizer: The worker's loaded stylizer.
        job: The file and its output (written through a temporary file renamed into place).
        file_options: How the file (or segment) is converted.
        device: How the outcome names the device (default: the stylizer's).
    """
    from inference.app.convert import stylize_file

    t0 = time.perf_counter()
    device = device or str(stylizer.device)
    try:
        if job.segment is None:
            result = stylize_file(stylizer, job.src, job.dst, file_options)
        else:
            from inference.app.segment_run import stylize_segment

            result = stylize_segment(stylizer, job.src, job.dst, job.segment, file_options)
    except UserError as exc:  # The summary is printed by stylize-video: the library's fields become its flags.
        return Outcome("failed", exc.with_flags(flag), seconds=time.perf_counter() - t0, device=device)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch; the summary names it.
        from inference.engine.cuda_errors import is_sticky_cuda_error

        text = " ".join(str(exc).split())[:300]
        message = f"{job.src}: {type(exc).__name__}: {text}"
        sticky = is_sticky_cuda_error(exc)
        if sticky:
            message += f" ({device} is unusable in this worker; it takes no more files)"
        return Outcome("failed", message, seconds=time.perf_counter() - t0, device=device, retire=sticky)
    return Outcome("written", frames=result.frames, seconds=result.seconds, device=device)


def stale_temporaries(dst: Path) -> list[Path]:
    """The hidden temporary outputs (``.<name>.tmp-*``) a killed writer of ``dst`` may have left next to it."""
    parent = dst.parent
    if not parent.is_dir():
        return []
    return sorted(parent.glob(f".{dst.name}.tmp-*"))
