"""Choosing the network's floating-point precision: by request, or on CUDA by a parity check against fp32.

With ``precision="auto"`` on CUDA the network runs one fixed probe batch in fp32, fp16 and bf16 when it is loaded;
the lowest precision whose output stays within :data:`PARITY_TOLERANCE` of fp32 (max abs error on the [0, 1] output)
is used. The decision is a pure function, :func:`select_precision`, so it is tested without a GPU.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from inference.core.errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Max abs error on the [0, 1] output that a reduced precision may show against fp32 on the probe: 4 of 255 levels
#: at the single worst probe value, which keeps typical pixels of the 8-bit output within a level or so.
PARITY_TOLERANCE = 4.0 / 255.0
#: Probe batch shape: two frames, large enough for every network's stride and its instance norms' statistics.
PROBE_SHAPE = (2, 3, 128, 192)
#: ``runner(cast network copy) -> callable on [B, 3, H, W]``: how the caller runs the network on frames (memory
#: layout, compile, stroke scale), so that the probe measures what the frames will get.
Runner = Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]


def bf16_native(device: torch.device) -> bool:
    """Whether CUDA ``device`` computes in bf16 natively (compute capability 8.0, Ampere, or newer).

    ``torch.cuda.is_bf16_supported()`` also says yes where bf16 is only emulated (older GPUs), which is slower than
    fp16 and never worth choosing.
    """
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


@dataclass(frozen=True)
class PrecisionReport:
    """How the precision was chosen.

    Attributes:
        chosen: ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        reason: ``"requested"``, ``"parity check"`` or ``"fp32 off CUDA"``.
        errors: Max abs error against fp32 per probed precision (empty when nothing was probed).
        tolerance: The tolerance the errors were compared with.
    """

    chosen: str
    reason: str
    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float = PARITY_TOLERANCE

    def line(self) -> str:
        """One log line, e.g. ``precision fp16 (parity check: fp16 9.8e-04, bf16 7.6e-03; tolerance 7.8e-03)``."""
        if not self.errors:
            return f"precision {self.chosen} ({self.reason})"
        errors = ", ".join(f"{name} {err:.1e}" for name, err in self.errors.items())
        return f"precision {self.chosen} ({self.reason}: {errors}; tolerance {self.tolerance:.1e})"


def select_precision(errors: dict[str, float], tolerance: float = PARITY_TOLERANCE) -> str:
    """fp16 if its error is under ``tolerance``, else bf16 if its error is, else fp32.

    Args:
        errors: Max abs error against fp32 for ``"fp16"`` and/or ``"bf16"``; a missing precision (unsupported) or a
            non-finite error (overflow to inf or NaN) never qualifies.
        tolerance: Largest acceptable error (exclusive).
    """
    for name in ("fp16", "bf16"):
        err = errors.get(name)
        if err is not None and math.isfinite(err) and err < tolerance:
            return name
    return "fp32"


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Validate a requested precision; ``None`` means "probe" (``"auto"`` on CUDA).

    ``"auto"`` is fp32 off CUDA. fp16 and bf16 are refused on the CPU, where they are slow or absent.

    Raises:
        UserError: Unknown precision, a reduced precision on the CPU, or bf16 on a GPU without it.
    """
    if precision == "auto":
        return None if device.type == "cuda" else torch.float32
    if precision not in DTYPES:
        raise UserError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    dtype = DTYPES[precision]
    if dtype != torch.float32 and device.type == "cpu":
        raise UserError(f"precision {precision} needs a GPU; use fp32 on the CPU")
    if dtype == torch.bfloat16 and device.type == "cuda" and not bf16_native(device):
        raise UserError("precision bf16 is not supported natively by this GPU (compute capability < 8.0); use fp16")
    return dtype


def probe_input(device: torch.device) -> torch.Tensor:
    """A fixed, photo-like probe batch ``[2, 3, 128, 192]`` in [0, 1]: smooth colour fields with fine texture (pure
    noise would exaggerate errors no real frame shows), identical on every run."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(PROBE_SHAPE[0], 3, 6, 9, generator=generator)
    smooth = F.interpolate(coarse, size=PROBE_SHAPE[2:], mode="bicubic", align_corners=False)
    texture = 0.08 * (torch.rand(PROBE_SHAPE, generator=generator) - 0.5)
    return (smooth + texture).clamp(0.0, 1.0).to(device)


@torch.inference_mode()
def parity_errors(
    network: nn.Module, device: torch.device, candidates: list[str], runner: Runner | None = None
) -> dict[str, float]:
    """Max abs error of ``network`` in each of ``candidates`` against fp32 on :func:`probe_input`.

    The caller's network is not changed: fp32 copies are cast (a network cast down and back up would lose bits).
    Copies keep the network's state, the selected style of a multi-style network included; ``runner`` runs each
    copy as the frames will be run (default: called directly).
    """
    run = runner or (lambda net: net)
    x = probe_input(device)
    reference = run(copy.deepcopy(network).float().to(device).eval())(x).float()
    errors = {}
    for name in candidates:
        net = copy.deepcopy(network).float().to(device, DTYPES[name]).eval()
        out = run(net)(x.to(DTYPES[name])).float()
        errors[name] = float((out - reference).abs().max())
        del net
    return errors


def choose_precision(
    network: nn.Module, precision: str, device: torch.device, runner: Runner | None = None
) -> PrecisionReport:
    """Resolve ``precision`` for ``network`` on ``device``, probing on CUDA when it is ``"auto"`` (with ``runner``,
    see :func:`parity_errors`; bf16 only where the GPU has it natively)."""
    dtype = resolve_precision(precision, device)
    if dtype is not None:
        name = next(n for n, d in DTYPES.items() if d == dtype)
        return PrecisionReport(name, "requested" if precision != "auto" else "fp32 off CUDA")
    candidates = ["fp16"] + (["bf16"] if bf16_native(device) else [])
    errors = parity_errors(network, device, candidates, runner)
    report = PrecisionReport(select_precision(errors), "parity check", errors)
    log.info("%s", report.line())
    return report
