"""The frame formats a :class:`~inference.engine.stylizer.Stylizer` accepts, checked, measured and converted to and from
the network's float RGB. Pure functions: no state, no device choice.

Formats: host frames are ``uint8 [H, W, 3]`` RGB or ``uint8 [H * 3 / 2, W]`` I420 planes (FFmpeg's ``yuv420p``);
device batches are ``uint8 [B, H, W, 3]`` RGB, float ``[B, 3, H, W]`` RGB in [0, 1], or ``uint8 [B, H * 3 / 2, W]``
I420 planes.
"""

from __future__ import annotations

import numpy as np
import torch

from inference.core.colour import YuvSpec, i420_to_rgb, rgb_to_i420, to_float, to_uint8
from inference.core.errors import UserError


def check_tensor(batch: torch.Tensor, yuv_in: YuvSpec | None) -> None:
    """Raise :class:`UserError` unless ``batch`` is one of the device batch formats (I420 only with ``yuv_in``)."""
    shape = list(batch.shape) if isinstance(batch, torch.Tensor) else None
    if shape is None:
        raise UserError(f"expected a torch tensor, got {type(batch).__name__}")
    if yuv_in is not None:
        # H * 3 / 2 rows with H even: exactly the row counts that are multiples of 3 (H = 2 k gives 3 k rows, any
        # k; requiring a multiple of 6 would refuse H = 2 mod 4, such as 1280x534).
        if batch.dtype != torch.uint8 or batch.dim() != 3 or shape[1] % 3 or shape[2] % 2:
            raise UserError(f"I420 input must be uint8 [B, H * 3 / 2, W] with H and W even, got {shape} {batch.dtype}")
    elif batch.dtype == torch.uint8:
        if batch.dim() != 4 or shape[3] != 3:
            raise UserError(f"uint8 RGB input must be [B, H, W, 3], got {shape}")
    elif batch.is_floating_point():
        if batch.dim() != 4 or shape[1] != 3:
            raise UserError(f"float RGB input must be [B, 3, H, W], got {shape}")
    else:
        raise UserError(f"expected uint8 or floating tensors, got {batch.dtype}")
    if shape[0] < 1:
        raise UserError("the batch is empty")


def frame_size(array: np.ndarray) -> tuple[int, int]:
    """``(height, width)`` of an RGB ``[H, W, 3]`` frame or of ``[H * 3 / 2, W]`` I420 planes."""
    return (array.shape[0], array.shape[1]) if array.ndim == 3 else (array.shape[0] * 2 // 3, array.shape[1])


def tensor_frame_size(batch: torch.Tensor, yuv_in: YuvSpec | None) -> tuple[int, int]:
    """``(height, width)`` of the frames of a device batch (I420, float NCHW or uint8 NHWC)."""
    if yuv_in is not None:
        return int(batch.shape[1]) * 2 // 3, int(batch.shape[2])
    if batch.is_floating_point():
        return int(batch.shape[2]), int(batch.shape[3])
    return int(batch.shape[1]), int(batch.shape[2])


def as_rgb(array: np.ndarray) -> np.ndarray:
    """Validate a caller's frame and return it as ``uint8 [H, W, 3]`` (grey and RGBA converted, never modified)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise UserError(f"frames must be uint8 arrays, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise UserError(f"frames must have shape [H, W, 3], got {list(array.shape)}")
    return array[..., :3]


def to_network_input(
    batch: torch.Tensor, yuv_in: YuvSpec | None, dtype: torch.dtype, channels_last: bool
) -> torch.Tensor:
    """I420 planes, ``uint8 [B, H, W, 3]`` or float ``[B, 3, H, W]`` -> float ``[B, 3, H, W]`` in ``dtype``, in
    channels-last memory when ``channels_last``."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if yuv_in is not None:
        x = i420_to_rgb(batch, yuv_in, dtype)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x
    if batch.is_floating_point():
        x = batch.to(dtype)
    else:
        # NHWC uint8 permuted to NCHW *is* channels_last in memory; the conversion keeps that layout.
        x = to_float(batch.permute(0, 3, 1, 2), dtype)
    return x.contiguous(memory_format=layout)


def from_network_output(y: torch.Tensor, yuv_out: YuvSpec | None, float_dtype: torch.dtype | None) -> torch.Tensor:
    """Float ``[B, 3, H, W]`` in [0, 1] -> I420 planes with ``yuv_out``, else a float copy in ``float_dtype`` when
    given, else ``uint8 [B, H, W, 3]``. Never the input tensor itself (identity networks at strength 0 return it)."""
    if yuv_out is not None:
        return rgb_to_i420(y, yuv_out)
    if float_dtype is not None:
        return y.to(float_dtype, copy=True)
    return to_uint8(y).permute(0, 2, 3, 1).contiguous()
