"""One batch on the device, as a :class:`~inference.engine.stylizer.Stylizer` runs it: the frame format to the
network's float RGB, the forward pass at the stroke scale, colour preservation and strength, and back to the caller's
format (see :mod:`inference.engine.frame_formats` for the formats).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from inference.core.colour import YuvSpec, blend, preserve_color
from inference.engine.backends import Forward
from inference.engine.engines import Spans
from inference.engine.frame_formats import from_network_output, to_network_input
from inference.engine.strokes import stroke_scaled

if TYPE_CHECKING:
    from inference.engine.options import RuntimeOptions


class BatchStep:
    """Colour, network and colour back for one batch; :meth:`configure` changes the live options between batches.

    Args:
        forward: The backend's forward pass (float ``[B, 3, H, W]`` RGB in [0, 1] in, same out; see
            :func:`~inference.engine.backends.build_forward`).
        dtype: The float type the network runs in.
        channels_last: Hand the network NHWC batches.
        options: The live options to start with (stroke scale and detail, colour preservation, strength).
    """

    def __init__(self, forward: Forward, dtype: torch.dtype, channels_last: bool, options: RuntimeOptions) -> None:
        self.backend_forward, self.dtype, self.channels_last = forward, dtype, channels_last
        self.configure(options)

    def configure(self, options: RuntimeOptions) -> None:
        """Use ``options``' stroke scale and detail (resizing around the backend: no re-export or recompile), colour
        preservation and strength for the batches that follow."""
        self.forward = stroke_scaled(self.backend_forward, options.stroke_scale, options.stroke_detail)
        self.preserve_color, self.strength = options.preserve_color, options.strength

    def network(self, x: torch.Tensor, mix: bool = True) -> torch.Tensor:
        """The network at the stroke scale, then colour preservation and strength.

        Args:
            x: Float ``[B, 3, H, W]`` RGB in [0, 1] on the network's device, in :attr:`dtype`; not modified.
            mix: Mix in the original by the strength; False leaves that to the consistency stage, which must see the
                network's output alone (so that it never moves a frame with nothing of the network's in it).

        Returns:
            ``[B, 3, H, W]`` RGB in [0, 1].
        """
        y = self.forward(x)
        if self.preserve_color:
            y = preserve_color(y, x)
        return blend(y, x, self.strength) if mix else y

    def __call__(
        self,
        batch: torch.Tensor,
        spans: Spans,
        yuv_in: YuvSpec | None,
        yuv_out: YuvSpec | None,
        float_dtype: torch.dtype | None,
        *,
        mix: bool = True,
    ) -> torch.Tensor:
        """One device batch (``uint8`` RGB or I420 with ``yuv_in``, or float RGB) -> the network -> the caller's
        format (I420 with ``yuv_out``, float in ``float_dtype`` for float input, else ``uint8`` RGB); each part timed
        in ``spans``. ``mix``: as for :meth:`network`."""
        with torch.inference_mode():
            with spans.span("colour"):
                x = to_network_input(batch, yuv_in, self.dtype, self.channels_last)
            with spans.span("network"):
                y = self.network(x, mix)
            with spans.span("colour back"):
                return from_network_output(y, yuv_out, float_dtype)
