"""Precision choice: the pure selection rule, the parity probe (run on the CPU, and under compile), and what the
Stylizer records; on a GPU (marker ``gpu``), native bf16 and the probe of the selected style."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from inference.core.errors import UserError
from inference.engine import precision
from inference.engine.backends import probe_runner
from inference.engine.options import RuntimeOptions
from inference.engine.precision import PARITY_TOLERANCE, PrecisionReport, select_precision
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ({"fp16": 1e-3, "bf16": 5e-3}, "fp16"),
        ({"fp16": 0.5, "bf16": 5e-3}, "bf16"),  # fp16 overflowed somewhere, bf16 is fine
        ({"fp16": math.inf, "bf16": 5e-3}, "bf16"),
        ({"fp16": math.nan, "bf16": math.nan}, "fp32"),
        ({"fp16": 0.2, "bf16": 0.3}, "fp32"),
        ({"fp16": PARITY_TOLERANCE, "bf16": 1.0}, "fp32"),  # the tolerance itself is not "under"
        ({"bf16": 1e-3}, "bf16"),  # no fp16 probe
        ({"fp16": 0.5}, "fp32"),  # no bf16 on this GPU
        ({}, "fp32"),
    ],
)
def test_select_precision(errors, expected):
    assert select_precision(errors) == expected


def test_select_precision_honours_the_tolerance():
    assert select_precision({"fp16": 0.02, "bf16": 0.03}, tolerance=0.025) == "fp16"
    assert select_precision({"fp16": 0.02, "bf16": 0.03}, tolerance=0.01) == "fp32"


def test_report_line():
    line = PrecisionReport("bf16", "parity check", {"fp16": 0.5, "bf16": 0.004}).line()
    assert line.startswith("precision bf16 (parity check: fp16 5.0e-01, bf16 4.0e-03; tolerance")
    assert PrecisionReport("fp32", "requested").line() == "precision fp32 (requested)"


def test_resolve_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert precision.resolve_precision("auto", cpu) == torch.float32
    assert precision.resolve_precision("auto", cuda) is None  # probe
    assert precision.resolve_precision("fp16", cuda) == torch.float16
    with pytest.raises(UserError, match="unknown precision"):
        precision.resolve_precision("fp8", cpu)
    with pytest.raises(UserError, match="needs a GPU"):
        precision.resolve_precision("bf16", cpu)


def test_parity_probe_measures_real_errors_without_touching_the_network():
    torch.manual_seed(0)
    net = build_network("tiny").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    errors = precision.parity_errors(net, torch.device("cpu"), ["bf16", "fp16"])
    assert set(errors) == {"bf16", "fp16"}
    assert 0.0 < errors["fp16"] < errors["bf16"] < 0.5  # bf16 keeps 8 mantissa bits, fp16 11
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in net.state_dict().items())
    x = precision.probe_input(torch.device("cpu"))
    assert x.shape == precision.PROBE_SHAPE and torch.equal(x, precision.probe_input(torch.device("cpu")))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_auto_on_cuda_probes_and_records(monkeypatch, caplog):
    # The CUDA branch of choose_precision, run with the probe on the CPU (where fp16 and bf16 kernels exist too).
    monkeypatch.setattr(precision, "resolve_precision", lambda p, d: None)
    monkeypatch.setattr(precision, "bf16_native", lambda device: True)
    torch.manual_seed(0)
    with caplog.at_level("INFO", logger="inference.engine.precision"):
        report = precision.choose_precision(build_network("tiny"), "auto", torch.device("cpu"))
    assert report.reason == "parity check" and set(report.errors) == {"fp16", "bf16"}
    assert report.chosen == select_precision(report.errors)
    assert caplog.text.count("precision ") == 1 and report.chosen in caplog.text


def test_stylizer_records_the_report():
    st = Stylizer(build_network("tiny"), RuntimeOptions(device="cpu"))
    assert st.precision_report == PrecisionReport("fp32", "fp32 off CUDA")
    st = Stylizer(build_network("tiny"), RuntimeOptions(device="cpu", precision="fp32"))
    assert st.precision_report.reason == "requested" and st.dtype == torch.float32


def test_bf16_only_where_the_gpu_runs_it_natively(monkeypatch):
    from inference.engine import precision

    cuda = torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what emulation reports too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # Turing: emulated
    assert not precision.bf16_native(cuda)
    with pytest.raises(UserError, match="bf16 is not supported natively"):
        precision.resolve_precision("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # Ampere: native
    assert precision.bf16_native(cuda) and precision.resolve_precision("bf16", cuda) == torch.bfloat16
    assert not precision.bf16_native(torch.device("cpu"))


def test_the_precision_probe_runs_the_configured_network(monkeypatch):
    import inference.engine.ready as ready_module
    from inference.engine.precision import PrecisionReport, probe_input

    seen = {}

    def fake_choose(network, precision, device, runner=None):
        probe = network.__class__(**network.config)  # a copy, as the real probe casts copies
        probe.load_state_dict(network.state_dict())
        seen["style"] = network.style_weights.tolist()

        def hook(_m, inputs, _o):
            seen["size"] = tuple(inputs[0].shape[-2:])
            seen["channels_last"] = inputs[0].is_contiguous(memory_format=torch.channels_last)

        probe.register_forward_hook(hook)
        runner(probe)(probe_input(device))
        return PrecisionReport("fp32", "requested")

    monkeypatch.setattr(ready_module, "choose_precision", fake_choose)
    net = build_network("tiny", num_styles=2)
    Stylizer(net, RuntimeOptions(device="cpu", style="1", channels_last=True, stroke_scale=2.0))
    assert seen == {"style": [0.0, 1.0], "size": (64, 96), "channels_last": True}


def test_precision_probe_under_compile_compiles_no_copies(monkeypatch):
    """The probe's runner compiles no copy of the network under any compile mode (copies compiled for the probe would
    share the class's compile cache: its recompile slots and dynamic shapes) and gives the network's own output."""

    def refuse(*args, **kwargs):
        raise AssertionError("the precision probe compiled a copy of the network")

    monkeypatch.setattr(torch, "compile", refuse)
    torch.manual_seed(0)
    net = build_network("tiny").eval()
    x = torch.rand(1, 3, 32, 48)
    for mode in ("default", "reduce-overhead", "max-autotune"):
        with torch.inference_mode():
            assert torch.equal(probe_runner(True, mode)(net)(x), net(x))


@pytest.mark.gpu
def test_bf16_is_native_on_cuda_from_compute_capability_8():
    from inference.engine.precision import bf16_native

    assert bf16_native(torch.device("cuda")) == (torch.cuda.get_device_capability()[0] >= 8)


@pytest.mark.gpu
def test_the_precision_probe_on_cuda_checks_the_selected_style():
    """Style 1's scales overflow fp16: the probe must reject fp16 when style 1 is selected, not test style 0."""
    torch.manual_seed(0)
    net = build_network("tiny", num_styles=2)
    with torch.no_grad():
        for module in net.modules():
            if hasattr(module, "num_styles") and isinstance(getattr(module, "weight", None), nn.Parameter):
                module.weight[1].fill_(1e6)
    first = Stylizer(copy.deepcopy(net), RuntimeOptions(device="cuda", style="0")).precision_report
    second = Stylizer(copy.deepcopy(net), RuntimeOptions(device="cuda", style="1")).precision_report
    assert math.isfinite(first.errors["fp16"]), first.line()
    assert second.chosen != "fp16" and first.errors != second.errors, (first.line(), second.line())
