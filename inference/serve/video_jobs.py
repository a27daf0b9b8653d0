"""Video uploads as jobs: each runs :func:`inference.app.convert.stylize_file` (sound copied, errors one line each) on a
worker thread with its own stylizer, reports its progress, and keeps its result until it is replaced by newer ones.

A job holds one of the ``max_jobs`` slots from its admission (before its upload is saved) to its end, counted under
one lock, so uploads that finish together cannot all slip past the limit. Its frame size is read from the stream's
header before any frame is decoded (:func:`probe_video`), and every frame is checked again as it is decoded (a stream
may change size midway).
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

from inference.core.errors import UserError, one_line
from inference.serve.catalog import Catalog, Controls
from inference.serve.errors import Busy
from inference.serve.pixels import MAX_IMAGE_PIXELS, check_pixels

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
    """A stylizer whose ``process`` counts the frames it yields (the job's progress) and refuses a frame over the
    pixel budget before it reaches the network; everything else delegated."""

    def __init__(self, stylizer, job: VideoJob, stopping: threading.Event, max_pixels: int) -> None:
        self._stylizer, self._job, self._stopping, self._max_pixels = stylizer, job, stopping, max_pixels

    def __getattr__(self, name: str):
        return getattr(self._stylizer, name)

    def _checked(self, items, yuv: bool):
        for frame, meta in items:
            height = frame.shape[0] * 2 // 3 if yuv else frame.shape[0]  # I420 planes are 1.5 rows per pixel row
            check_pixels(frame.shape[1], height, self._max_pixels, "frame", self._job.controls.options.stroke_scale)
            yield frame, meta

    def process(self, items, **kwargs):
        items = self._checked(items, kwargs.get("yuv_in") is not None)
        for out in self._stylizer.process(items, **kwargs):
            if self._stopping.is_set():  # The server is stopping: end the job now (its temporary output is removed).
                raise UserError("the server stopped before the video was finished")
            self._job.frames += 1
            yield out


class VideoJobs:
    """The job table and its thread pool.

    Args:
        catalog: Where each job's stylizer comes from.
        max_jobs: Jobs being uploaded, queued or running at once; more are refused (HTTP 429) rather than queued
            without bound.
        folder: Where uploads and results are kept (a temporary folder, removed by :meth:`close`, when ``None``).
        max_pixels: The pixel budget of each frame (:func:`~inference.serve.pixels.check_pixels`).
    """

    def __init__(
        self, catalog: Catalog, max_jobs: int = 2, folder: Path | None = None, max_pixels: int = MAX_IMAGE_PIXELS
    ) -> None:
        self.catalog, self.max_jobs, self.max_pixels = catalog, max_jobs, max_pixels
        self._slots = 0  # Jobs admitted and not yet finished (uploading, queued or running); under self._lock.
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="stylize-serve-"))
        self._owns_folder = folder is None
        self.jobs: dict[str, VideoJob] = {}
        self._lock = threading.Lock()
        #: Set by :meth:`close`: running jobs end at their next frame (their temporary output is removed).
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="stylize-video-job")

    def active(self) -> int:
        """Jobs admitted and not finished: being uploaded, queued or running."""
        with self._lock:
            return self._slots

    def new_upload(self, filename: str) -> tuple[str, Path]:
        """Admit a job: take one of the ``max_jobs`` slots (held until the job ends, or :meth:`cancel_upload`) and
        reserve its id and the path its upload is saved to (keeping the file's extension, which FFmpeg may use).

        Raises:
            Busy: ``max_jobs`` jobs are already admitted.
        """
        with self._lock:
            if self._slots >= self.max_jobs:
                raise Busy(f"{self.max_jobs} video jobs are already running (the --max-jobs limit); try again later")
            self._slots += 1
        job_id = uuid.uuid4().hex[:12]
        suffix = "".join(ch for ch in Path(filename).suffix.lower() if ch.isalnum() or ch == ".")[:8]
        return job_id, self.folder / f"{job_id}-in{suffix or '.bin'}"

    def cancel_upload(self, path: Path) -> None:
        """Give back the slot of an admitted job that will not start (its upload failed or was refused)."""
        path.unlink(missing_ok=True)
        with self._lock:
            self._slots -= 1

    def start(self, job_id: str, name: str, src: Path, controls: Controls, total: int | None = None) -> VideoJob:
        """Queue the admitted job whose upload is at ``src`` (``total``: its frame count when known)."""
        job = VideoJob(job_id, name, src, self.folder / f"{job_id}-stylized.mp4", controls, total=total)
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
            counting = _Counting(stylizer, job, self.stopping, self.max_pixels)
            result = stylize_file(counting, job.src, job.dst, overwrite=True, audio=True)
            job.frames, job.warnings, job.status = result.frames, result.warnings, "done"
        except UserError as exc:
            job.error = one_line(f"{job.name}: {str(exc).replace(str(job.src), '').lstrip(': ')}")
            job.status = "failed"
        except Exception as exc:  # The page gets one line; the server log keeps the trace.
            log.exception("video job %s failed", job.id)
            job.error, job.status = one_line(f"{job.name}: internal error ({type(exc).__name__})"), "failed"
        finally:
            job.finished_at = time.time()
            job.src.unlink(missing_ok=True)
            with self._lock:
                self._slots -= 1

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


def probe_video(path: Path, name: str, max_pixels: int, stroke_scale: float = 1.0) -> int | None:
    """Check the video's declared frame size against the pixel budget without decoding a frame; return its frame count
    from the header (or duration x rate), ``None`` when unknown.

    FFmpeg's stream probe decodes a frame to learn the pixel format; ``max_pixels`` is handed to that decoder, so a
    small file declaring huge frames is refused by FFmpeg before any frame buffer is allocated (the size then reads
    0x0).

    Raises:
        UserError: The frames (at ``stroke_scale``) are over ``max_pixels``, in one line naming ``name``. A file that is
            not a readable video passes: the job reports it in :func:`~inference.app.convert.stylize_file`'s words.
    """
    import av

    try:
        container = av.open(str(path), options={"max_pixels": str(max_pixels)})  # container and every stream
    except Exception:  # Anything unreadable is reported by stylize_file, in its own words.
        return None
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise UserError(f"{name}: the video's frame size is unknown or more than {max_pixels / 1e6:g} megapixels")
        check_pixels(width, height, max_pixels, name, stroke_scale)
        try:
            if stream.frames:
                return int(stream.frames)
            seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
            return max(1, round(seconds * float(stream.average_rate))) if stream.average_rate else None
        except Exception:  # A header without a usable duration: progress is then reported without a total.
            return None
