"""The batch cap that keeps every tensor of a network under CUDA's 32-bit index math.

Some CUDA kernels (reflection padding among them) index with 32-bit integers and refuse a tensor of 2^31 elements or
more with "input tensor must fit into 32-bit index math". That is not an out-of-memory error: halving the batch on
out-of-memory alone never reaches it, and the file fails. In ``johnson`` the decoder's 64-channel tensor at full
resolution (after the second upsampling, reflection-padded for the next 3x3 convolution) is the largest: at
3840x2160 it holds about 5.3e8 elements per frame, so a batch of 8 is over the limit and a batch of 4 is under it.
A stroke scale below 1 runs the network on a larger frame and lowers the cap further.

The largest tensor is found by running the network on the ``meta`` device (shapes only, no memory, no compute) at two
sizes and fitting each tensor's height and width as a linear function of the input's: exact for networks built from
convolutions, padding, strided and upsampling layers, which is what :mod:`inference.model.networks` builds.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from inference.core.errors import UserError
from inference.engine.strokes import stroke_size

#: Largest element count a tensor may have for 32-bit index math (indices 0 .. 2^31 - 1).
INDEX_LIMIT = 2**31 - 1
_PROBES = (64, 128)  # probe sides: multiples of every registered network's stride


def _shapes(network: nn.Module, side: int) -> list[tuple[int, ...]]:
    """Shapes of every module's tensor output for one ``[1, 3, side, side]`` input on the ``meta`` device."""
    shapes: list[tuple[int, ...]] = []

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
        outputs = output if isinstance(output, tuple | list) else (output,)
        shapes.extend(tuple(t.shape) for t in outputs if isinstance(t, torch.Tensor))

    # float32 whatever the network runs in (a Stylizer's is fp16 or bf16 on CUDA): only the shapes matter.
    meta = copy.deepcopy(network).to(device="meta", dtype=torch.float32)
    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, side, side, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


class PeakTensor:
    """The element count of a network's largest tensor as a function of the frame size.

    Args:
        network: A style network (``[B, 3, H, W]`` in, same out; ``stride`` attribute = its padding multiple).
    """

    def __init__(self, network: nn.Module) -> None:
        self.stride = int(getattr(network, "stride", 1))
        small, large = (_shapes(network, side) for side in _PROBES)
        # Per tensor: channels and (slope, offset) of its height/width in the input's side, from the two probes.
        self._fits: list[tuple[int, float, float]] = []
        for a, b in zip(small, large, strict=True):
            if len(a) != 4:
                continue
            slope = (b[2] - a[2]) / (_PROBES[1] - _PROBES[0])
            self._fits.append((a[1], slope, a[2] - slope * _PROBES[0]))

    def elements(self, height: int, width: int, stroke_scale: float = 1.0) -> int:
        """Elements of the largest tensor for one ``height x width`` frame (input and output included); at a
        ``stroke_scale`` the network runs on the frame resized by ``1 / stroke_scale``
        (:mod:`inference.engine.strokes`)."""
        h, w = stroke_size(height, width, stroke_scale)
        # The networks pad the input to a multiple of their stride, and to at least twice it.
        ph = max(math.ceil(h / self.stride), 2) * self.stride
        pw = max(math.ceil(w / self.stride), 2) * self.stride
        peak = 3 * h * w
        for channels, slope, offset in self._fits:
            peak = max(peak, channels * round(slope * ph + offset) * round(slope * pw + offset))
        return int(peak)

    def max_batch(self, height: int, width: int, stroke_scale: float = 1.0, limit: int | None = None) -> int:
        """The largest batch of ``height x width`` frames whose every tensor stays within ``limit`` (default
        :data:`INDEX_LIMIT`).

        Raises:
            UserError: Not even one frame fits (one line, with the sizes and what to do).
        """
        limit = INDEX_LIMIT if limit is None else limit
        per_frame = self.elements(height, width, stroke_scale)
        if per_frame > limit:
            scale = f" at `stroke_scale` {stroke_scale:g}" if stroke_scale != 1.0 else ""
            raise UserError(
                f"a {width}x{height} frame{scale} needs a {per_frame:.3g}-element tensor in the network, over the "
                f"2^31 limit of CUDA's 32-bit index math; use `max_side`, `size` or a larger `stroke_scale`",
                mentions=("stroke_scale", "max_side", "size"),
            )
        return limit // per_frame
