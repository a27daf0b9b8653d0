"""The FastAPI application: the page, the JSON API and the webcam WebSocket.

API (every error is ``{"error": "<one line>"}`` with a 4xx status, never a stack trace; framework errors such as
an unknown route, a wrong method or a malformed multipart body included; :mod:`inference.serve.errors`):

- ``GET /api/info``: the artifacts (name, architecture, styles), the limits (upload bytes, jobs, pixels) and the
  device.
- ``POST /api/image``: multipart ``image`` plus optional control fields (:class:`~inference.serve.catalog.Controls`)
  and ``format`` (jpeg, png, webp) -> the stylized image.
- ``POST /api/videos``: multipart ``video`` plus control fields -> ``202 {"id": ..., ...}``; ``GET /api/videos/{id}``
  reports status and progress; ``GET /api/videos/{id}/result`` is the stylized MP4 (sound copied).
- ``WS /ws/live``: webcam frames in, stylized frames out (see :mod:`inference.serve.live_socket`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from inference.core.errors import UserError, one_line
from inference.serve.access import Access, Guard
from inference.serve.catalog import Catalog
from inference.serve.errors import Busy, NotFound
from inference.serve.frames import FrameService, decode_image, encode_image
from inference.serve.limits import UploadLimit
from inference.serve.live_socket import serve_live
from inference.serve.pixels import MAX_FRAME_PIXELS, MAX_IMAGE_PIXELS
from inference.serve.video_jobs import VideoJobs, probe_video

log = logging.getLogger("inference")
STATIC = Path(__file__).parent / "static"
_FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"),
            "webp": ("WEBP", "image/webp")}  # fmt: skip
_UPLOAD_CHUNK = 1 << 20


@dataclass
class ServeConfig:
    """What ``stylize-serve`` was started with.

    Attributes:
        max_upload_bytes: Largest request body accepted (images and videos).
        max_jobs: Video jobs queued or running at once.
        jobs_folder: Where uploads and results are kept; a temporary folder when ``None``.
        max_pixels: The pixel budget of an image or a video frame, after the stroke scale
            (:func:`~inference.serve.pixels.check_pixels`); webcam frames get the lower of it and 4K.
        access: Who may connect (:class:`~inference.serve.access.Access`: Host, Origin, token); ``None`` checks
            nothing (an application embedded in a test or behind its own guard; ``stylize-serve`` always sets it).
        on_ready: Called once the default artifact is loaded, just before the server accepts connections.
    """

    max_upload_bytes: int = 200 * 2**20
    max_jobs: int = 2
    jobs_folder: Path | None = None
    max_pixels: int = MAX_IMAGE_PIXELS
    access: Access | None = None
    on_ready: Callable[[], None] | None = None


def _error(status: int, message: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def create_app(catalog: Catalog, config: ServeConfig | None = None):
    """Build the ASGI application around ``catalog`` (stylizers load on first use; the default one at startup):
    the FastAPI app inside the access guard (:class:`~inference.serve.access.Guard`) when ``config.access`` is set,
    inside the size limits (:class:`~inference.serve.limits.UploadLimit`)."""
    config = config or ServeConfig()
    frames = FrameService(catalog)
    jobs = VideoJobs(catalog, config.max_jobs, config.jobs_folder, config.max_pixels)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(catalog.stylizer, catalog.default)  # The first frame then needs no load.
        if config.on_ready is not None:
            config.on_ready()
        yield
        frames.close()
        await asyncio.to_thread(jobs.close)

    app = FastAPI(title="stylize-serve", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.frames, app.state.jobs, app.state.catalog = frames, jobs, catalog
    _error_handlers(app)
    _routes(app, catalog, frames, jobs, config)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # The size limits come first, so that no refusal (the guard's included) logs a 100 KB request target.
    return UploadLimit(app if config.access is None else Guard(app, config.access), config.max_upload_bytes)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return _error(404 if isinstance(exc, NotFound) else 429 if isinstance(exc, Busy) else 400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def framework_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (404, 405 with its Allow header, a multipart body without a boundary, too many
        # fields or files, a field over 1 MB) would otherwise answer {"detail": ...}.
        return _error(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client went away mid-upload: nobody reads this answer, and it is not a server fault (no 500, no trace).
        log.info("%s %s: the client disconnected before the request was complete", request.method, request.url.path)
        return _error(400, "the client disconnected before the request was complete")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(400, f"{where}: {first.get('msg', 'invalid request').lower()}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response is sent, so uvicorn logs the trace once, on the server side.
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")


async def _fields(request: Request) -> tuple[dict, UploadFile | None]:
    """The form's control fields and its one file (any field name), or a one-line error."""
    form = await request.form()
    files = [v for v in form.values() if not isinstance(v, str)]
    if len(files) != 1:
        raise UserError(f"expected one file in the form (multipart/form-data), got {len(files)}")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return fields, files[0]


def _routes(app: FastAPI, catalog: Catalog, frames: FrameService, jobs: VideoJobs, config: ServeConfig) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info")
    async def info() -> dict:
        stylizer = catalog.stylizer(catalog.default)
        return {
            "artifacts": catalog.describe(),
            "default": catalog.default,
            "device": str(stylizer.device),
            "backend": stylizer.backend,
            "max_upload_bytes": config.max_upload_bytes,
            "max_jobs": config.max_jobs,
            "max_pixels": config.max_pixels,
        }

    @app.post("/api/image")
    async def image(request: Request) -> Response:
        fields, upload = await _fields(request)
        fmt, media = _FORMATS.get(fields.pop("format", "jpeg").lower(), (None, None))
        if fmt is None:
            raise UserError(f"format: expected one of {', '.join(_FORMATS)}")
        controls = catalog.controls(fields)
        name = one_line(upload.filename or "upload", 100)
        data = await upload.read()
        array = await asyncio.to_thread(decode_image, data, name, config.max_pixels, controls.options.stroke_scale)
        out = await asyncio.wrap_future(frames.submit(array, controls))
        return Response(await asyncio.to_thread(encode_image, out, fmt), media_type=media)

    @app.post("/api/videos", status_code=202)
    async def video(request: Request) -> dict:
        fields, upload = await _fields(request)
        controls = catalog.controls(fields)
        name = one_line(Path(upload.filename or "upload").name, 100)
        job_id, path = jobs.new_upload(name)  # holds a --max-jobs slot from here to the job's end
        try:
            await asyncio.to_thread(_save, upload.file, path)
            total = await asyncio.to_thread(probe_video, path, name, config.max_pixels, controls.options.stroke_scale)
        except BaseException:
            jobs.cancel_upload(path)
            raise
        return jobs.start(job_id, name, path, controls, total).report()

    @app.get("/api/videos/{job_id}")
    async def video_status(job_id: str) -> dict:
        return _job(jobs, job_id).report()

    @app.get("/api/videos/{job_id}/result")
    async def video_result(job_id: str) -> Response:
        job = _job(jobs, job_id)
        if job.status != "done":
            return _error(409, f"{job.name}: the job is {job.status}" + (f": {job.error}" if job.error else ""))
        return FileResponse(job.dst, media_type="video/mp4", filename=f"{Path(job.name).stem}-stylized.mp4")

    @app.websocket("/ws/live")
    async def live(websocket: WebSocket) -> None:
        await serve_live(websocket, catalog, frames, min(config.max_pixels, MAX_FRAME_PIXELS))


def _job(jobs: VideoJobs, job_id: str):
    job = jobs.jobs.get(job_id)
    if job is None:
        raise NotFound(f"unknown video job {job_id!r}")
    return job


def _save(file, path: Path) -> None:
    with open(path, "wb") as out:
        while chunk := file.read(_UPLOAD_CHUNK):
            out.write(chunk)
