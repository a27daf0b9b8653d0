"""Frame formats the Stylizer accepts (``inference/engine/frame_formats.py``): I420 planes of any even height."""

from __future__ import annotations

import pytest
import torch

from inference.core.errors import UserError
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network


def test_i420_input_accepts_heights_two_mod_four():
    st = Stylizer(build_network("identity"), RuntimeOptions(device="cpu"))
    from inference.core.colour import YuvSpec

    for height in (34, 36):  # 34 = 2 (mod 4), like 1280x534 and 1920x802
        planes = torch.full((1, height * 3 // 2, 64), 128, dtype=torch.uint8)
        assert st.tensors(planes, yuv_in=YuvSpec()).shape == (1, height, 64, 3)
    with pytest.raises(UserError, match="I420 input"):
        st.tensors(torch.zeros(1, 50, 64, dtype=torch.uint8), yuv_in=YuvSpec())  # 50 rows: not H * 3 / 2
