"""The pieces split out of the Stylizer, each on its own: building the forward pass (backends.py), frame formats
(frame_formats.py) and file identity (hashing.py). The Stylizer's own behaviour is tested in test_stylizer.py."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from inference.core.colour import YuvSpec
from inference.core.errors import UserError
from inference.core.hashing import sha256_of_file
from inference.engine.backends import build_forward, compile_mode
from inference.engine.frame_formats import as_rgb, check_tensor, frame_size, from_network_output, to_network_input
from inference.model.networks import build_network

CPU = torch.device("cpu")


def test_compile_modes_parse_to_one_name_or_none():
    assert compile_mode(False) is None and compile_mode(None) is None
    assert compile_mode(True) == "default" and compile_mode("reduce-overhead") == "reduce-overhead"
    with pytest.raises(UserError, match="unknown compile mode 'fast'; use one of default, reduce-overhead"):
        compile_mode("fast")


def test_build_forward_resolves_the_backend_once():
    net = build_network("tiny").eval()
    forward, name = build_forward(net, CPU, torch.float32, "torch")
    assert name == "torch" and forward is net  # eager: the network itself, nothing wrapped around it
    # Nothing for ONNX Runtime to speed up in a network without weights: auto keeps torch.
    identity = build_network("identity").eval()
    assert build_forward(identity, CPU, torch.float32, "auto") == (identity, "torch")
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        build_forward(net, CPU, torch.float32, "tensorrt")
    with pytest.raises(UserError, match="^backend onnxruntime runs on the CPU in fp32 without `compile`"):
        build_forward(net.half(), CPU, torch.float16, "onnxruntime")


def test_frame_formats_round_trip_and_refuse_other_shapes():
    rgb = torch.randint(0, 256, (2, 6, 8, 3), dtype=torch.uint8)
    x = to_network_input(rgb, None, torch.float32, channels_last=True)
    assert x.shape == (2, 3, 6, 8) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(from_network_output(x, None, None), rgb)  # uint8 -> float -> uint8 is exact
    planes = from_network_output(x, YuvSpec(), None)
    assert planes.shape == (2, 9, 8) and frame_size(planes[0].numpy()) == (6, 8)
    check_tensor(planes, YuvSpec())
    with pytest.raises(UserError, match="uint8 RGB input must be"):
        check_tensor(rgb[..., :2], None)
    grey = np.zeros((4, 5), np.uint8)
    assert as_rgb(grey).shape == (4, 5, 3)
    with pytest.raises(UserError, match="frames must be uint8"):
        as_rgb(grey.astype(np.float32))


def test_one_sha256_for_artifacts_and_style_images(tmp_path):
    from styletrain.module import sha256_of_file as training_sha256

    path = tmp_path / "f.bin"
    path.write_bytes(b"ab" * 1_000_000)
    assert sha256_of_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert training_sha256 is sha256_of_file  # training imports the runtime's, no copy
    with pytest.raises(UserError, match="cannot read"):
        sha256_of_file(tmp_path / "missing")
