"""Which device errors a run can recover from: retry with a smaller batch, or retire the worker.

CUDA reports several different failures as plain ``RuntimeError`` s, so the decision is made from the exception's
type where one exists and from the text CUDA, cuDNN and cuBLAS put in the message otherwise:

* *resource* errors (:func:`is_retryable_batch_error`): out of memory (``torch.OutOfMemoryError`` exists only from
  torch 2.5 on, ``torch.cuda.OutOfMemoryError`` earlier; cuDNN and cuBLAS allocation failures arrive as
  ``RuntimeError``), and a tensor over the 2^31 elements of the 32-bit index math that some kernels (reflection
  padding, for one) still use. A smaller batch fixes both.
* *sticky* errors (:func:`is_sticky_cuda_error`): an illegal address, a failed launch, a device-side assert... After
  one of these the CUDA context is unusable: every later call on that device fails at once, so a worker that met one
  must stop taking files (a fresh process gets a fresh context).
"""

from __future__ import annotations

import torch

# Allocation failures that are not reported as an OutOfMemoryError (cuDNN workspace, cuBLAS handle creation).
_OUT_OF_MEMORY_TEXT = (
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
)
# Kernels that index with 32-bit integers refuse larger tensors with these messages.
_INDEX_MATH_TEXT = ("32-bit index math", "canUse32BitIndexMath", "int32 indexing")
# cudaGetErrorString texts of the errors that leave the context corrupted ("sticky" errors in CUDA's documentation).
_STICKY_TEXT = (
    "illegal memory access",
    "unspecified launch failure",
    "device-side assert triggered",
    "misaligned address",
    "an illegal instruction was encountered",
    "hardware stack error",
    "invalid program counter",
    "the launch timed out and was terminated",
    "uncorrectable ECC error",
    "CUDA error: unknown error",
)


def _out_of_memory_types() -> tuple[type[BaseException], ...]:
    """The out-of-memory exception classes this torch has (``torch.OutOfMemoryError`` only from 2.5)."""
    found = {getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)}
    return tuple(t for t in found if isinstance(t, type))


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device allocation failure (any torch version, cuDNN and cuBLAS included)."""
    if isinstance(exc, _out_of_memory_types()):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _OUT_OF_MEMORY_TEXT)


def is_index_overflow(exc: BaseException) -> bool:
    """Whether ``exc`` is a kernel refusing a tensor over 2^31 elements (32-bit index math)."""
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _INDEX_MATH_TEXT)


def is_retryable_batch_error(exc: BaseException) -> bool:
    """Whether the same frames may succeed in a smaller batch: out of memory or 32-bit index overflow."""
    return not is_sticky_cuda_error(exc) and (is_out_of_memory(exc) or is_index_overflow(exc))


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) left the CUDA context unusable for this process."""
    seen = 0
    while exc is not None and seen < 8:  # follow "raise ... from" chains a little way
        # torch.AcceleratorError (recent torch) is a RuntimeError too.
        if isinstance(exc, RuntimeError) and any(marker.lower() in str(exc).lower() for marker in _STICKY_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
