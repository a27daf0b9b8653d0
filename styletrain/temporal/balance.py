"""A temporal-loss weight relative to the content loss: calibrated over the first training steps, then frozen.

An absolute temporal weight means different things for different loss networks: the raw content and style losses of
a randomly initialised VGG and of an ImageNet VGG differ by orders of magnitude, while the temporal loss compares
output pixels and does not depend on the loss network at all. A *balance* ``b`` instead says: the weighted temporal
term starts at ``b`` times the weighted content term. Over the first ``steps`` training steps
:class:`TemporalBalance` sums the weighted content term ``C`` and the raw temporal term ``T`` of each step and uses
``w = b * sum(C) / sum(T)``; after ``steps`` steps ``w`` is frozen for the rest of the run.

Why this carries over between loss networks: if the loss network's features are multiplied by ``s``, the content
term is multiplied by ``s**2``, so the calibrated ``w`` is too, and the weighted temporal term keeps its ratio to the
content term. The calibration state is kept in buffers, so it is saved in checkpoints: a resumed run keeps its weight.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from styletrain.calibration import Calibration


class TemporalBalance(Calibration):
    """Calibrates the temporal weight from the measured loss terms.

    Args:
        balance: Target ratio of the weighted temporal term to the weighted content term at the start of training;
            > 0.
        steps: Number of training steps over which the terms are averaged before the weight is frozen; >= 1.

    Attributes:
        weight: The current (float64 scalar buffer) absolute temporal weight; 0 until a temporal term is seen.
    """

    def __init__(self, balance: float, steps: int = 100) -> None:
        if not (math.isfinite(balance) and balance > 0):
            raise ValueError(f"temporal balance must be a finite number > 0, got {balance}")
        super().__init__(steps, "temporal")
        self.balance = float(balance)
        # float64 sums: the terms may differ from each other by many orders of magnitude.
        self.register_buffer("weight", torch.zeros((), dtype=torch.float64))
        self.register_buffer("content_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("temporal_sum", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def observe(self, weighted_content: Tensor, temporal: Tensor) -> None:
        """Record one training step's terms and update the weight (no-op once frozen).

        Args:
            weighted_content: Scalar, the content term times its weight.
            temporal: Scalar, the raw (unweighted) temporal term.
        """
        if self.frozen:
            return
        terms = self._count_step(torch.stack([weighted_content, temporal]), self.weight.device)
        self.content_sum += terms[0]
        self.temporal_sum += terms[1]
        positive = self.temporal_sum > 0
        ratio = self.content_sum / torch.where(positive, self.temporal_sum, torch.ones_like(self.temporal_sum))
        self.weight.copy_(torch.where(positive, self.balance * ratio, torch.zeros_like(ratio)))

    def extra_repr(self) -> str:
        return f"balance={self.balance}, steps={self.steps}"
