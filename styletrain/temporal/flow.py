"""Training's optical flow: estimators chosen by name, an on-disk cache, and Middlebury ``.flo`` files.

Every estimator belongs to the runtime: OpenCV DIS and Farnebäck in :mod:`inference.engine.flow`, torchvision RAFT
(its one loader and its one sizing rule) in :mod:`inference.engine.device_flow`; this module only names them
(:data:`FLOW_METHODS`) and caches what they return. All flows follow the project's convention, returned as numpy
``float32 [H,W,2]`` (OpenCV layout; channel 0 = u/x, channel 1 = v/y, pixels): ``flow = estimate_flow(a, b)``
satisfies ``a(x) ≈ b(x + flow(x))``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from inference.core.colour import to_uint8
from inference.core.errors import MediaError, UserError
from inference.engine.device_flow import pretrained_raft
from inference.engine.flow import dis_flow, farneback_flow, to_gray

_FLO_TAG = 202021.25


def _to_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 ``HxWx3`` (or ``HxW``) as is; float arrays in [0,1] are scaled to uint8."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = to_uint8(torch.from_numpy(np.require(frame, requirements=["W"]))).numpy()
    return frame


def _raft_flow(frame_a: np.ndarray, frame_b: np.ndarray, variant: str) -> np.ndarray:
    # On the GPU when there is one: training's loaders and metrics run RAFT at full size, which is slow on a CPU.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return pretrained_raft(variant, device).estimate(frame_a, frame_b)


# Estimators by name, each ``(frame_a, frame_b) -> float32 [H,W,2]`` on uint8 RGB (or grey) frames; tests may wrap an
# entry to count calls. "raft" is torchvision's raft_large.
ESTIMATORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "dis": lambda a, b: dis_flow(to_gray(a), to_gray(b), preset="medium"),
    "farneback": lambda a, b: farneback_flow(to_gray(a), to_gray(b)),
    "raft": lambda a, b: _raft_flow(a, b, "raft_large"),
    "raft_small": lambda a, b: _raft_flow(a, b, "raft_small"),
}
FLOW_METHODS = tuple(ESTIMATORS)


def estimate_flow(frame_a: np.ndarray, frame_b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Optical flow from ``frame_a`` to ``frame_b``.

    Args:
        frame_a, frame_b: RGB ``uint8 [H,W,3]`` (or float in [0,1]) of the same size.
        method: ``"dis"`` (OpenCV DIS, medium preset, on grayscale), ``"farneback"`` (OpenCV, full size), ``"raft"``
            or ``"raft_small"`` (torchvision, pretrained weights downloaded once; unavailable weights raise a
            one-line :class:`UserError`).

    Returns:
        ``float32 [H,W,2]`` in pixels with ``frame_a(x) ≈ frame_b(x + flow(x))``.
    """
    if method not in ESTIMATORS:
        raise UserError(f"unknown flow method '{method}'; available: {', '.join(ESTIMATORS)}")
    a, b = _to_uint8_rgb(frame_a), _to_uint8_rgb(frame_b)
    if a.shape != b.shape:
        raise ValueError(f"estimate_flow: frames differ in shape {a.shape} vs {b.shape}")
    return ESTIMATORS[method](a, b)


class FlowCache:
    """Flow cached on disk as float16 ``.npy`` files, keyed by a hash of both frames' bytes, their size and method.

    Files are written to a temporary name and renamed, so a crashed or parallel run never leaves a partial file.
    float16 keeps about 3 significant digits: under 0.03 px error for motions below 64 px.

    Args:
        cache_dir: Folder for the cache (created on first write).
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(frame_a: np.ndarray, frame_b: np.ndarray, method: str) -> str:
        h = hashlib.sha256()
        h.update(f"{method}|{frame_a.shape}|{frame_a.dtype}|".encode())
        h.update(np.ascontiguousarray(frame_a).tobytes())
        h.update(np.ascontiguousarray(frame_b).tobytes())
        return h.hexdigest()[:40]

    def get(self, frame_a: np.ndarray, frame_b: np.ndarray, method: str = "dis") -> np.ndarray:
        """Flow ``frame_a -> frame_b`` (float32 ``[H,W,2]``), from the cache or computed and stored."""
        a, b = _to_uint8_rgb(frame_a), _to_uint8_rgb(frame_b)
        path = self.cache_dir / f"{self.key(a, b, method)}.npy"
        if path.is_file():
            try:
                flow = np.load(path, allow_pickle=False)
                if flow.shape == (*a.shape[:2], 2):
                    self.hits += 1
                    return flow.astype(np.float32)
            except (OSError, ValueError):
                pass  # a corrupt entry is recomputed and overwritten
        self.misses += 1
        flow = estimate_flow(a, b, method)
        self._write(path, flow.astype(np.float16))
        return flow

    def _write(self, path: Path, array: np.ndarray) -> None:
        # The runtime's atomic writer: a temporary file renamed into place, with the usual (umask) permissions.
        from inference.core.atomic import atomic_output

        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, suffix=".npy") as tmp:
                np.save(tmp, array, allow_pickle=False)
        except OSError as exc:
            raise UserError(f"{self.cache_dir}: cannot write the flow cache ({exc.strerror or exc})") from None


def forward_backward(
    frame_a: np.ndarray, frame_b: np.ndarray, method: str = "dis", cache: FlowCache | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(flow a->b, flow b->a)``, each float32 ``[H,W,2]``, through ``cache`` when given."""
    if cache is not None:
        return cache.get(frame_a, frame_b, method), cache.get(frame_b, frame_a, method)
    return estimate_flow(frame_a, frame_b, method), estimate_flow(frame_b, frame_a, method)


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury ``.flo`` file (tag 202021.25, int32 width, int32 height, row-major u,v float32).

    Returns:
        ``float32 [H,W,2]`` flow.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"{path}: cannot read flow file ({exc.strerror or exc})") from None
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != np.float32(_FLO_TAG):
        raise MediaError(f"{path}: not a Middlebury .flo file (bad tag)")
    w, h = (int(v) for v in np.frombuffer(data[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(data) != 12 + 8 * w * h:
        raise MediaError(f"{path}: truncated or inconsistent .flo file ({w}x{h}, {len(data)} bytes)")
    return np.frombuffer(data[12:], "<f4").reshape(h, w, 2).copy()


def write_flo(path: str | os.PathLike, flow: np.ndarray) -> Path:
    """Write ``flow [H,W,2]`` as a Middlebury ``.flo`` file (used for tests and exporting cached flow)."""
    path = Path(path)
    h, w = flow.shape[:2]
    header = np.array([_FLO_TAG], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(flow, dtype="<f4").tobytes())
    return path
