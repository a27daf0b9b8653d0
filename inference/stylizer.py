"""The Python API: :class:`Stylizer` runs a style network over images, frame iterables and whole videos.

Frames travel as ``uint8`` all the way to the device: on CUDA a batch is stacked into pinned host memory, copied
asynchronously, and converted to float ``[B, 3, H, W]`` (channels_last, fp16/bf16) on the GPU; the result is
converted back to ``uint8 [B, H, W, 3]`` on the GPU and copied out asynchronously while the next batch runs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.colour import YuvSpec, blend, i420_to_rgb, preserve_color, rgb_to_i420
from inference.errors import UserError
from inference.stages import StageClock

log = logging.getLogger(__name__)

_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an explicit device that is not available is a :class:`UserError`."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"invalid device {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {device!r} requested but MPS is not available")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``"auto"``: fp16 on CUDA, fp32 elsewhere. fp16/bf16 are refused on the CPU, where they are slow or absent."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in _PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    dtype = _PRECISIONS[precision]
    if dtype != torch.float32 and device.type == "cpu":
        raise UserError(f"precision {precision} needs a GPU; use fp32 on the CPU")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("precision bf16 is not supported by this GPU; use fp16")
    return dtype


@dataclass
class _Pending:
    """A launched batch whose result is still being computed or copied to the host."""

    host: torch.Tensor  # uint8 [B, H, W, 3]
    event: Any  # torch.cuda.Event or None
    metas: list


class Stylizer:
    """Apply a style network to frames.

    Args:
        network: A style network: float ``[B, 3, H, W]`` RGB in [0, 1] in, same out.
        device: ``"auto"`` (cuda, then mps, then cpu), or any torch device string.
        precision: ``"auto"`` (fp16 on CUDA, fp32 otherwise), ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        batch_size: Frames per forward pass; halved automatically when CUDA runs out of memory. ``None`` (auto):
            8 on CUDA, 1 elsewhere: on a 2-core CPU batch 1 ran faster per frame than batch 4 (light 640x360:
            18.6 vs 15.1 frames/s; 1280x720: 4.5 vs 1.9), since a CPU gains nothing from wider launches.
        channels_last: Run convolutions in NHWC layout. Off by default: bench/inference.py measured it slower in
            eager mode on an H100 (johnson 1080p bf16: 56 vs 86 frames/s) and no faster on a 2-core CPU.
        compile: Wrap the network in ``torch.compile`` (slow first batch, faster afterwards).
        strength: 1 is the full style, 0 the original frame; values in between blend.
        preserve_color: Keep the input's colours, take only the luminance from the style.
        backend: ``"torch"``, ``"onnxruntime"`` (CPU, fp32 only; needs the ``onnxruntime`` and ``onnx`` packages)
            or ``"auto"``: ONNX Runtime when the device is the CPU, precision fp32, ``compile`` off and the packages
            import, else torch. ONNX Runtime ran ``light`` at 18-38 frames/s against 13-14 for eager PyTorch on a
            2-core CPU. If the export fails in auto mode, a warning is logged and torch is used.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        strength: float = 1.0,
        preserve_color: bool = False,
        backend: str = "auto",
    ) -> None:
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"--strength must be in [0, 1], got {strength}")
        if batch_size is not None and batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        if batch_size is None:
            batch_size = 8 if self.device.type == "cuda" else 1
        self.dtype = resolve_precision(precision, self.device)
        self.batch_size = int(batch_size)
        self.strength = float(strength)
        self.preserve_color = bool(preserve_color)
        self.channels_last = channels_last
        self.compiled = compile
        network = network.eval().requires_grad_(False).to(self.device, self.dtype)
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # Every batch has the same shape: tune once, then reuse.
        self.network = network
        self._forward = torch.compile(network) if compile else network
        self._cuda = self.device.type == "cuda"
        self.backend = self._select_backend(backend)

    def _select_backend(self, backend: str) -> str:
        """Resolve ``backend`` and, for ONNX Runtime, replace ``self._forward`` with the exported network."""
        from inference import onnx_backend

        if backend not in ("auto", "torch", "onnxruntime"):
            raise UserError(f"unknown backend {backend!r}; use auto, torch or onnxruntime")
        if backend == "torch":
            return "torch"
        if backend == "onnxruntime":
            if self.device.type != "cpu" or self.dtype != torch.float32 or self.compiled:
                raise UserError("--backend onnxruntime runs on the CPU in fp32 without --compile; use --device cpu")
            if not onnx_backend.available():
                raise UserError(
                    "--backend onnxruntime needs the onnxruntime and onnx packages (pip install onnx onnxruntime)"
                )
            try:
                self._forward = onnx_backend.OrtNetwork(self.network)
            except Exception as exc:  # the exporter raises many types
                raise UserError(
                    f"ONNX export of the network failed ({type(exc).__name__}); use --backend torch"
                ) from None
            return "onnxruntime"
        if self.device.type != "cpu" or self.dtype != torch.float32 or self.compiled or not onnx_backend.available():
            return "torch"
        try:
            self._forward = onnx_backend.OrtNetwork(self.network)
        except Exception as exc:  # the exporter raises many types; torch still runs the network
            log.warning("ONNX export failed, using PyTorch instead (%s: %s)", type(exc).__name__, str(exc)[:200])
            return "torch"
        return "onnxruntime"

    @classmethod
    def from_artifact(cls, path: str, **kwargs: Any) -> Stylizer:
        """Load an exported ``.safetensors`` artifact (see :func:`inference.artifact.load_artifact`).

        Args:
            path: The artifact file.
            **kwargs: Constructor options (``device``, ``precision``, ``batch_size``, ...).
        """
        from inference.artifact import load_artifact

        artifact = load_artifact(path, device="cpu")
        stylizer = cls(artifact.network, **kwargs)
        stylizer.metadata = artifact.metadata
        return stylizer

    # ----------------------------------------------------------------------------------------------- public API
    def image(self, array: np.ndarray) -> np.ndarray:
        """Stylize one image.

        Args:
            array: ``uint8 [H, W, 3]`` RGB (``[H, W]`` grey and ``[H, W, 4]`` RGBA are accepted too).

        Returns:
            ``uint8 [H, W, 3]`` RGB.
        """
        return next(self.frames([array]))

    def frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stylize a sequence lazily, in batches, keeping the order.

        Args:
            frames: ``uint8 [H, W, 3]`` RGB arrays; consecutive frames of the same size are batched together.

        Yields:
            ``uint8 [H, W, 3]`` RGB arrays, one per input frame.
        """
        for out, _ in self.process((_as_rgb(f), None) for f in frames):
            yield out

    def video(self, src: str, dst: str, **options: Any):
        """Stylize a video, image, frame folder or glob into a video, GIF, frame folder or image.

        See :func:`inference.convert.stylize_file` for the options (``overwrite``, ``start``, ``duration``,
        ``size``, ``max_side``, ``crf``, ``preset``, ``codec``, ``gif_fps``, ``gif_width``, ``progress``...).

        Returns:
            A :class:`inference.convert.StylizeResult` (output path, frame count, fps, warnings).
        """
        from inference.convert import stylize_file

        return stylize_file(self, src, dst, **options)

    # ------------------------------------------------------------------------------------------------ batching
    def process(
        self,
        items: Iterable[tuple[np.ndarray, Any]],
        *,
        yuv_in: YuvSpec | None = None,
        yuv_out: YuvSpec | None = None,
        clock: StageClock | None = None,
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Stylize ``(array, meta)`` pairs in batches; yields ``(stylized, meta)`` in input order.

        Args:
            items: ``(frame, meta)`` pairs. A frame is ``uint8 [H, W, 3]`` RGB, or with ``yuv_in`` ``uint8
                [H * 3 / 2, W]`` I420 planes (FFmpeg's ``yuv420p`` layout), converted to RGB on the device.
            yuv_in: The input planes' matrix and range; ``None`` for RGB frames.
            yuv_out: Return I420 planes in this matrix and range (converted on the device); ``None`` for RGB.
            clock: Accumulates busy time per stage (colour, upload, network, download, colour back).

        On CUDA one batch stays in flight while the next is launched, so host-side work (stacking, copies,
        handing frames to the encoder) overlaps GPU compute.
        """
        pending: deque[_Pending] = deque()
        for arrays, metas in _batches(items, lambda: self.batch_size):
            pending.extend(self._launch_safe(arrays, metas, yuv_in, yuv_out, clock))
            while len(pending) > (1 if self._cuda else 0):
                yield from self._finish(pending.popleft())
        while pending:
            yield from self._finish(pending.popleft())

    def _launch_safe(self, arrays: list[np.ndarray], metas: list, *conv) -> list[_Pending]:
        """Launch a batch; on CUDA out-of-memory halve the batch size and retry in smaller pieces."""
        try:
            return [self._launch(arrays, metas, *conv)]
        except torch.OutOfMemoryError:
            if len(arrays) == 1:
                h, w = arrays[0].shape[:2] if arrays[0].ndim == 3 else (arrays[0].shape[0] * 2 // 3, arrays[0].shape[1])
                raise UserError(f"out of GPU memory even for one {w}x{h} frame; use --max-side or --size") from None
            torch.cuda.empty_cache()
            self.batch_size = max(1, len(arrays) // 2)
            log.warning("CUDA out of memory: batch size reduced to %d", self.batch_size)
            half = self.batch_size
            first = self._launch_safe(arrays[:half], metas[:half], *conv)
            return first + self._launch_safe(arrays[half:], metas[half:], *conv)

    def _launch(
        self,
        arrays: list[np.ndarray],
        metas: list,
        yuv_in: YuvSpec | None = None,
        yuv_out: YuvSpec | None = None,
        clock: StageClock | None = None,
    ) -> _Pending:
        n = len(arrays)
        if self.compiled and n < self.batch_size:
            # A fixed batch shape avoids recompiling for the last, partial batch.
            arrays = arrays + [arrays[-1]] * (self.batch_size - n)
        clock = clock or StageClock()
        host = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.uint8, pin_memory=self._cuda)
        np.stack(arrays, out=host.numpy())
        with torch.inference_mode():
            with clock.time("upload"):
                x8 = host.to(self.device, non_blocking=True)
            with clock.time("colour"):
                if yuv_in is not None:
                    x = i420_to_rgb(x8, yuv_in, self.dtype)
                else:
                    # NHWC uint8 permuted to NCHW *is* channels_last in memory; the conversion keeps that layout.
                    x = x8.permute(0, 3, 1, 2).to(self.dtype).mul_(1.0 / 255.0)
                if not self.channels_last:
                    x = x.contiguous()
                elif yuv_in is not None:
                    x = x.contiguous(memory_format=torch.channels_last)
            with clock.time("network"):
                y = self._forward(x)
                if self.preserve_color:
                    y = preserve_color(y, x)
                y = blend(y, x, self.strength)
            with clock.time("colour back"):
                if yuv_out is not None:
                    out = rgb_to_i420(y, yuv_out)[:n]
                else:
                    out = y.mul(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)[:n]
            if not self._cuda:
                with clock.time("download"):
                    return _Pending(out.cpu().contiguous(), None, metas)
            result = torch.empty(out.shape, dtype=torch.uint8, pin_memory=True)
            result.copy_(out, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            return _Pending(result, event, metas)

    @staticmethod
    def _finish(pending: _Pending) -> Iterator[tuple[np.ndarray, Any]]:
        if pending.event is not None:
            pending.event.synchronize()
        batch = pending.host.numpy()
        for i, meta in enumerate(pending.metas):
            yield batch[i], meta


def _batches(items: Iterable[tuple[np.ndarray, Any]], size) -> Iterator[tuple[list[np.ndarray], list]]:
    """Group consecutive same-shaped items into lists of at most ``size()`` (re-read each time: it may shrink)."""
    arrays: list[np.ndarray] = []
    metas: list = []
    for array, meta in items:
        if arrays and (len(arrays) >= size() or array.shape != arrays[0].shape):
            yield arrays, metas
            arrays, metas = [], []
        arrays.append(array)
        metas.append(meta)
    if arrays:
        yield arrays, metas


def _as_rgb(array: np.ndarray) -> np.ndarray:
    """Validate a caller's frame and return it as ``uint8 [H, W, 3]`` (grey and RGBA converted, never modified)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise UserError(f"frames must be uint8 arrays, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise UserError(f"frames must have shape [H, W, 3], got {list(array.shape)}")
    return array[..., :3]
