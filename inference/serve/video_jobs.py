"""Video uploads as jobs: each runs :func:`inference.app.convert.stylize_file` (sound copied, errors one line each) on a
worker thread with its own stylizer, reports its progress, and keeps its result until it is replaced by newer ones.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.core.errors import UserError
from inference.serve.catalog import Catalog, Controls

log = logging.getLogger("inference")

#: Finished jobs kept (with their files) before the oldest is deleted.
KEEP_FINISHED = 20


@dataclass
class VideoJob:
    """One upload's state, as ``GET /api/videos/{id}`` reports it."""

    id: str
    name: str
    src: Path
    dst: Path
    controls: Controls
    status: str = "queued"  # queued, running, done, failed
    frames: int = 0
    total: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    finished_at: float | None = None

    def report(self) -> dict[str, Any]:
        """The JSON the API returns: status, progress in [0, 1] (``None`` while the frame count is unknown), error."""
        progress = 1.0 if self.status == "done" else (min(1.0, self.frames / self.total) if self.total else None)
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "frames": self.frames,
            "total_frames": self.total,
            "progress": progress,
            "error": self.error,
            "warnings": self.warnings,
            "result": f"/api/videos/{self.id}/result" if self.status == "done" else None,
        }


class _Counting:
    """A stylizer whose ``process`` counts the frames it yields (the job's progress); everything else delegated."""

    def __init__(self, stylizer, job: VideoJob, stopping: threading.Event) -> None:
        self._stylizer, self._job, self._stopping = stylizer, job, stopping

    def __getattr__(self, name: str):
        return getattr(self._stylizer, name)

    def process(self, items, **kwargs):
        for out in self._stylizer.process(items, **kwargs):
            if self._stopping.is_set():  # The server is stopping: end the job now (its temporary output is removed).
                raise UserError("the server stopped before the video was finished")
            self._job.frames += 1
            yield out


class VideoJobs:
    """The job table and its thread pool.

    Args:
        catalog: Where each job's stylizer comes from.
        max_jobs: Jobs running or queued at once; more are refused (HTTP 429) rather than queued without bound.
        folder: Where uploads and results are kept (a temporary folder, removed by :meth:`close`, when ``None``).
    """

    def __init__(self, catalog: Catalog, max_jobs: int = 2, folder: Path | None = None) -> None:
        self.catalog, self.max_jobs = catalog, max_jobs
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="stylize-serve-"))
        self._owns_folder = folder is None
        self.jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        #: Set by :meth:`close`: running jobs end at their next frame (their temporary output is removed).
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="stylize-video-job")

    def active(self) -> int:
        """Jobs queued or running."""
        return sum(job.status in ("queued", "running") for job in self.jobs.values())

    def new_upload(self, filename: str) -> tuple[str, Path]:
        """Reserve a job id and the path its upload is saved to (keeping the file's extension, which FFmpeg may use).

        Raises:
            UserError: ``max_jobs`` jobs are already queued or running.
        """
        if self.active() >= self.max_jobs:
            raise UserError(f"{self.max_jobs} video jobs are already running (the --max-jobs limit); try again later")
        job_id = uuid.uuid4().hex[:12]
        suffix = "".join(ch for ch in Path(filename).suffix.lower() if ch.isalnum() or ch == ".")[:8]
        return job_id, self.folder / f"{job_id}-in{suffix or '.bin'}"

    def start(self, job_id: str, name: str, src: Path, controls: Controls) -> VideoJob:
        """Queue the job whose upload is at ``src``."""
        job = VideoJob(job_id, name, src, self.folder / f"{job_id}-stylized.mp4", controls, total=_frame_count(src))
        with self._lock:
            self.jobs[job_id] = job
            self._forget_old()
        self._pool.submit(self._run, job)
        return job

    def _run(self, job: VideoJob) -> None:
        from inference.app.convert import stylize_file

        job.status = "running"
        try:
            stylizer = self.catalog.load(job.controls.artifact, job.controls)
            result = stylize_file(_Counting(stylizer, job, self.stopping), job.src, job.dst, overwrite=True, audio=True)
            job.frames, job.warnings, job.status = result.frames, result.warnings, "done"
        except UserError as exc:
            job.error, job.status = f"{job.name}: {str(exc).replace(str(job.src), '').lstrip(': ')}", "failed"
        except Exception as exc:  # The page gets one line; the server log keeps the trace.
            log.exception("video job %s failed", job.id)
            job.error, job.status = f"{job.name}: internal error ({type(exc).__name__})", "failed"
        finally:
            job.finished_at = time.time()
            job.src.unlink(missing_ok=True)

    def _forget_old(self) -> None:
        done = sorted((j for j in self.jobs.values() if j.finished_at), key=lambda j: j.finished_at or 0)
        for job in done[: max(0, len(done) - KEEP_FINISHED)]:
            job.dst.unlink(missing_ok=True)
            del self.jobs[job.id]

    def close(self) -> None:
        """Stop running jobs at their next frame, drop queued ones, then remove the temporary folder."""
        self.stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def _frame_count(path: Path) -> int | None:
    """The video's frame count from its header (or duration x rate); ``None`` when unknown or unreadable (the job
    then reports the problem itself)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
            return max(1, round(seconds * float(stream.average_rate))) if stream.average_rate else None
    except Exception:  # Anything unreadable is reported by stylize_file, in its own words.
        return None
