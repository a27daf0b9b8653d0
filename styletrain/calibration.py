"""The step counting shared by the loss-weight calibrations: terms are summed over the first training steps, then
the weights freeze (:class:`styletrain.temporal.balance.TemporalBalance`,
:class:`styletrain.loss_scale.PerceptualBalance`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Calibration(nn.Module):
    """Counts the observed training steps in a buffer (saved in checkpoints) and knows when calibration is over.

    Args:
        steps: Training steps observed before the weights freeze; >= 1.
        what: The calibration's name for error messages (``"temporal"``, ``"perceptual"``).
    """

    def __init__(self, steps: int, what: str) -> None:
        super().__init__()
        if int(steps) < 1:
            raise ValueError(f"{what} calibration steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        # A host-side copy of ``seen``: reading the buffer (on the GPU) every step would wait for the device each
        # time. ``None`` means unknown (fresh or just loaded); it is read from the buffer once, then counted here.
        self._host_seen: int | None = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        # A loaded ``seen`` makes the host copy stale; a method, not a hook, so the module stays picklable.
        super()._load_from_state_dict(*args, **kwargs)
        self._host_seen = None

    @property
    def frozen(self) -> bool:
        """Whether calibration is over (the weights no longer change); reads the device at most once per load."""
        if self._host_seen is None:
            self._host_seen = int(self.seen)
        return self._host_seen >= self.steps

    def _count_step(self, values: Tensor, device: torch.device) -> Tensor:
        """One step's ``values`` (any shape) as float64 on ``device``, summed over DDP ranks so that every rank
        calibrates to the same weights; counts the step."""
        values = values.detach().double().to(device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(values)
        if self._host_seen is None:
            self._host_seen = int(self.seen)
        self.seen += 1
        self._host_seen += 1
        return values
