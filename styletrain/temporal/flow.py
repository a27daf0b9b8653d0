"""Optical flow between real frames: OpenCV DIS (CPU, default), torchvision RAFT (optional), and an on-disk cache.

All flows follow the styletrain convention, returned as numpy ``float32 [H,W,2]`` (OpenCV layout; channel 0 = u/x,
channel 1 = v/y, pixels): ``flow = estimate_flow(a, b)`` satisfies ``a(x) ≈ b(x + flow(x))``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from inference.core.colour import to_uint8
from inference.core.errors import MediaError, UserError

FLOW_METHODS = ("dis", "farneback", "raft", "raft_small")
_FLO_TAG = 202021.25


def _to_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 ``HxWx3`` (or ``HxW``) as is; float arrays in [0,1] are scaled to uint8."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = to_uint8(torch.from_numpy(np.require(frame, requirements=["W"]))).numpy()
    return frame


def _dis_flow(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    from inference.engine.flow import dis_flow, to_gray

    return dis_flow(to_gray(frame_a), to_gray(frame_b), preset="medium")


def _farneback_flow(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    """Farnebäck's polynomial-expansion flow at full resolution: a ruler of another family than the DIS that the
    consistency stage uses, so that the stage is not judged by its own flow."""
    import cv2

    from inference.engine.flow import to_gray

    flow = cv2.calcOpticalFlowFarneback(to_gray(frame_a), to_gray(frame_b), None, 0.5, 5, 15, 5, 7, 1.5, 0)
    return flow.astype(np.float32)


@lru_cache(maxsize=2)
def _raft_model(small: bool, device: str):
    """Build torchvision RAFT with its pretrained weights (downloaded once into the torch hub cache)."""
    from torchvision.models import optical_flow as of

    if small:
        builder, weights = of.raft_small, of.Raft_Small_Weights.DEFAULT
    else:
        builder, weights = of.raft_large, of.Raft_Large_Weights.DEFAULT
    try:
        model = builder(weights=weights, progress=False)
    except Exception as exc:  # noqa: BLE001 - any download/IO failure becomes the same one-line user error
        raise UserError(
            f"RAFT weights {weights} are not available ({type(exc).__name__}: {exc}); "
            "use flow method 'dis' (OpenCV, no download) for offline use"
        ) from None
    return model.eval().to(device)


def _raft_flow(frame_a: np.ndarray, frame_b: np.ndarray, small: bool = False) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _raft_model(small, device)
    h, w = frame_a.shape[:2]
    # RAFT needs sides divisible by 8; replicate-pad and crop the flow back.
    ph, pw = (-h) % 8, (-w) % 8
    pair = []
    for f in (frame_a, frame_b):
        rgb = np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().to(device) / 127.5 - 1.0
        pair.append(F.pad(t, (0, pw, 0, ph), mode="replicate"))
    with torch.inference_mode():
        flow = model(pair[0], pair[1])[-1][0, :, :h, :w]
    return flow.permute(1, 2, 0).float().cpu().numpy()


# Estimators by name; tests may wrap an entry to count calls.
ESTIMATORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "dis": _dis_flow,
    "farneback": _farneback_flow,
    "raft": lambda a, b: _raft_flow(a, b, small=False),
    "raft_small": lambda a, b: _raft_flow(a, b, small=True),
}


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
