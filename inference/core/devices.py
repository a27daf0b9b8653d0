"""Which device a Stylizer runs on (:func:`resolve_device`), and which GPU and how many host threads a process's media
and compute work use.

Three things must agree on the GPU of a worker, and by default each picks the first one:

* torch: ``torch.cuda.set_device`` in the worker, so that anything not given a device explicitly (cuDNN handles,
  ``synchronize()``, memory statistics, the CUDA context itself) lives on the worker's GPU;
* NVDEC: PyAV's ``HWAccel("cuda", device=INDEX)`` (:func:`nvdec_device`);
* NVENC: the encoder's ``gpu`` option (:func:`nvenc_options`).

CUDA's device indices are the same for torch and FFmpeg (both go through the driver, which applies
``CUDA_VISIBLE_DEVICES``), so ``cuda:1`` means index 1 for all three; :func:`physical_id` names the GPU behind it for
log lines. The index is bound per thread (:func:`bind_media_device`, a context variable): the decoder and encoder
are created in the thread that calls :func:`inference.app.convert.stylize_file`, which binds the Stylizer's device.

Host threads: one worker per GPU each starting a thread per core for x264 and another for the decoder
oversubscribes the host N times over. :func:`host_thread_budgets` splits the cores between the workers, and
:func:`bind_worker` hands a worker its share, which the encoder and decoder read (:func:`encoder_threads`,
:func:`decoder_threads`).
"""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar

import torch

from inference.core.errors import UserError

log = logging.getLogger(__name__)

#: NVDEC fails (or PyAV silently falls back to software) beyond this many decode surfaces.
NVDEC_MAX_SURFACES = 32
# FFmpeg's nvdec.c allocates the stream's DPB (up to 16 frames for H.264 and HEVC) plus 2, plus one surface per frame
# thread: the frame threads NVDEC may use so that the worst case stays within the limit.
_WORST_DPB, _EXTRA_SURFACES = 16, 2
NVDEC_MAX_THREADS = NVDEC_MAX_SURFACES - _WORST_DPB - _EXTRA_SURFACES

_MEDIA_GPU: ContextVar[int | None] = ContextVar("media_gpu", default=None)
_HOST_THREADS: int | None = None  # this process's share of the host cores (None: not a pool worker, use them all)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an explicit device that is not available is a :class:`UserError`."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"invalid device {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not _mps_available():
        raise UserError(f"device {device!r} requested but MPS is not available")
    return dev


def _mps_available() -> bool:
    """Apple's GPU backend exists in this torch build and a device is present."""
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def cuda_index(device: str | torch.device | None) -> int | None:
    """The CUDA device index of ``device`` (``"cuda"`` alone: the current device), or ``None`` if not CUDA."""
    if device is None:
        return None
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    if dev.index is not None:
        return int(dev.index)
    return int(torch.cuda.current_device()) if torch.cuda.is_available() else 0


def physical_id(index: int) -> str:
    """The GPU behind CUDA index ``index`` as ``CUDA_VISIBLE_DEVICES`` lists it (e.g. ``"3"`` or a UUID)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def bind_media_device(device: str | torch.device | None) -> None:
    """Make decoders and encoders created from now on in this thread use ``device``'s GPU (none if not CUDA)."""
    _MEDIA_GPU.set(cuda_index(device))


def media_gpu() -> int | None:
    """The GPU index bound by :func:`bind_media_device` in this thread, or ``None``."""
    return _MEDIA_GPU.get()


def nvdec_device() -> str | None:
    """The ``device`` argument of PyAV's ``HWAccel("cuda", ...)``: the bound GPU's index as text, or ``None``."""
    index = media_gpu()
    return None if index is None else str(index)


def nvenc_options() -> dict[str, str]:
    """The NVENC private option that selects the bound GPU (``{"gpu": "1"}``); empty when none is bound."""
    index = media_gpu()
    return {} if index is None else {"gpu": str(index)}


def host_thread_budgets(devices: list[str], cores: int | None = None) -> list[int]:
    """Host threads per worker: the cores shared evenly by every worker (GPU workers encode and decode on the host
    too), at least one each.

    Args:
        devices: One entry per worker, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``.
        cores: Host cores (default ``os.cpu_count()``).
    """
    cores = cores or os.cpu_count() or 1
    return [max(1, cores // max(1, len(devices)))] * len(devices)


def bind_worker(device: str, host_threads: int | None) -> None:
    """Set up a worker process for ``device``: its GPU becomes torch's current device and the media GPU, and its
    share of host threads is what torch, the encoder and the decoder use."""
    global _HOST_THREADS
    _HOST_THREADS = host_threads
    if host_threads:
        torch.set_num_threads(host_threads)
    index = cuda_index(device)
    if index is not None:
        torch.cuda.set_device(index)
        log.info("worker on %s (GPU %s), %s host threads", device, physical_id(index), host_threads or "all")
    bind_media_device(device)


def encoder_threads() -> int:
    """x264/x265 frame threads: the worker's share of the cores, or 0 (let the encoder use them all)."""
    return _HOST_THREADS or 0


def decoder_threads(nvdec: bool) -> int:
    """Decoder threads: NVDEC at most :data:`NVDEC_MAX_THREADS` (frame threads add decode surfaces); a software
    decoder half the worker's share (the encoder takes the most), or 0 (FFmpeg's automatic count) outside a pool."""
    share = _HOST_THREADS
    if nvdec:
        return min(share or os.cpu_count() or 1, NVDEC_MAX_THREADS)
    return max(1, share // 2) if share else 0
