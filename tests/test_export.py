"""Export: checkpoint -> artifact is exact (whatever the wrapper prefixes), bad files give one line, ONNX matches."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.core.errors import UserError
from inference.model.artifact import load_artifact
from inference.model.networks import build_network
from styletrain.cli import main
from styletrain.export import ONNX_ATOL, export, load_checkpoint
from styletrain.module import StyleTransferModule

from .conftest import small_module


@pytest.fixture
def module(tmp_path: Path, make_image) -> StyleTransferModule:
    style = tmp_path / "Starry Night.png"
    Image.fromarray(make_image(64, 64, seed=3)).save(style)
    module = small_module(style, style_size=32, loss={"style_layers": ["relu1_2"]}, temporal={"weight": 1.0})
    module.run_config = {"model": {"network": "tiny"}, "trainer": {"max_steps": 3}}
    with torch.no_grad():  # move away from the initialisation so that a wrong load would show
        for p in module.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module.eval()


def _checkpoint(module: StyleTransferModule, path: Path, wrap: str = "") -> Path:
    """A Lightning-style checkpoint whose keys carry ``wrap`` (e.g. DDP's ``module.``, compile's ``_orig_mod.``)."""
    state = {}
    for key, value in module.state_dict().items():
        name = key.replace("net.", "net._orig_mod.", 1) if "_orig_mod" in wrap else key
        state[("module." if "module" in wrap else "") + name] = value
    checkpoint = {"state_dict": state, "hyper_parameters": dict(module.hparams), "optimizer_states": [{"x": 1}]}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("wrap", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_checkpoint_to_artifact_matches_module(module, tmp_path, wrap):
    ckpt = _checkpoint(module, tmp_path / "run.ckpt", wrap)
    out = export(ckpt, tmp_path / "out" / "starry.safetensors")
    artifact = load_artifact(out)
    meta = artifact.metadata
    assert (meta.network, meta.style_name, meta.temporal) == ("tiny", "Starry Night", True)
    assert meta.style_sha256 == module.style_sha256 and meta.config["trainer"]["max_steps"] == 3
    x = torch.rand(2, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(artifact.network(x), module.net(x))  # bit-exact
    assert set(artifact.network.state_dict()) == set(module.net.state_dict())


@pytest.mark.parametrize(("alias_free", "layout"), [(True, "grouped"), (False, "grouped"), (False, "flat")])
def test_checkpoint_without_metadata_uses_hyper_parameters(module, tmp_path, alias_free, layout):
    # Hyper-parameters alone do not say which design trained: the weights' names decide, and the export is exact.
    net = build_network("tiny", alias_free=alias_free)
    net.load_state_dict({k: 0.05 * torch.randn_like(v) for k, v in net.state_dict().items()})
    state = {**{k: v for k, v in module.state_dict().items() if not k.startswith("net.")},
             **{f"net.{k}": v for k, v in net.state_dict().items()}}  # fmt: skip
    # The flat layout: how the module stored its 30 arguments before the groups (a few of them are enough here).
    flat = {"style": module.hparams["style"], "network": "tiny", "network_kwargs": None, "temporal_weight": 1.0}
    hparams = dict(module.hparams) if layout == "grouped" else flat | {"lr": 1e-3, "export_path": None}
    torch.save({"state_dict": state, "hyper_parameters": hparams}, tmp_path / "old.ckpt")
    artifact = load_artifact(export(tmp_path / "old.ckpt", tmp_path / "old.safetensors"))
    assert artifact.metadata.network == "tiny" and artifact.metadata.style_name == "Starry Night"
    assert artifact.metadata.temporal is True and set(artifact.metadata.config["model"]) == set(hparams)  # as written
    assert artifact.metadata.network_kwargs["alias_free"] is alias_free
    x = torch.rand(1, 3, 33, 41)
    with torch.no_grad():
        assert torch.equal(artifact.network(x), net.eval()(x))


def test_bad_checkpoints_are_one_line_errors(module, tmp_path):
    good = _checkpoint(module, tmp_path / "good.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    for path, match in [
        (truncated, "truncated.ckpt"),
        (foreign, "not a Lightning checkpoint"),
        (text, "notes.ckpt"),
        (tmp_path / "missing.ckpt", "not found"),
    ]:
        with pytest.raises(UserError, match=match) as info:
            load_checkpoint(path) if path != foreign else export(path, tmp_path / "x.safetensors")
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"\.safetensors or \.onnx"):
        export(good, tmp_path / "out.pt")


def test_cli_export_prints_path_and_errors(module, tmp_path, capsys):
    ckpt = _checkpoint(module, tmp_path / "run.ckpt")
    main(["export", str(ckpt), "-o", str(tmp_path / "a.safetensors")])
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "a.safetensors")
    with pytest.raises(SystemExit) as info:
        main(["export", str(tmp_path / "nope.ckpt"), "-o", str(tmp_path / "b.safetensors")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "nope.ckpt" in err[0]


def test_onnx_dynamic_size_matches_onnxruntime(module, tmp_path):
    import onnx
    import onnxruntime as ort

    ckpt = _checkpoint(module, tmp_path / "run.ckpt", "module._orig_mod.")
    out = export(ckpt, tmp_path / "starry.onnx")
    model = onnx.load(out)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["network"] == "tiny" and props["style_sha256"] == module.style_sha256
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 40, 56), (3, 3, 51, 33), (1, 3, 128, 72)]:  # sizes other than the export's
        x = torch.rand(*shape)
        got = session.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            expected = module.net(x).numpy()
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < ONNX_ATOL  # stated tolerance: max |diff| < 1e-4


def test_onnx_from_artifact(module, tmp_path):
    artifact = export(_checkpoint(module, tmp_path / "run.ckpt"), tmp_path / "s.safetensors")
    assert export(artifact, tmp_path / "s.onnx").is_file()
    with pytest.raises(UserError, match="already an artifact"):
        export(artifact, tmp_path / "t.safetensors")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4])
def test_cli_export_errors_are_complete_clean_lines(module, tmp_path, capsys, protocol):
    """No ANSI codes, nothing cut off, torch's advice never shown: each message is ours, whole, on one line."""
    marker = tmp_path / "PWNED"
    (tmp_path / "payload.ckpt").write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=protocol))
    (tmp_path / "random.ckpt").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n" * 50)
    good = _checkpoint(module, tmp_path / "good.ckpt")
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[:3000])
    expected = {
        "payload.ckpt": "a pickle holding Python objects other than tensors; refused, none of its code was run",
        "random.ckpt": "not a PyTorch checkpoint",
        "text.ckpt": "not a PyTorch checkpoint",
        "truncated.ckpt": "truncated or corrupt PyTorch checkpoint, or one holding Python objects other than tensors",
    }
    for name, reason in expected.items():
        with pytest.raises(SystemExit) as info:
            main(["export", str(tmp_path / name), "-o", str(tmp_path / "out.onnx")])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err == f"error: {tmp_path / name}: {reason}\n", err  # exactly one line, no warning before it
    assert not marker.exists() and not list(tmp_path.glob("*out*"))


def test_cli_export_usage_errors_are_one_line(module, tmp_path, capsys):
    ckpt = _checkpoint(module, tmp_path / "run.ckpt")
    for args, match in [
        ([str(ckpt)], "the following arguments are required: -o/--output"),
        ([str(ckpt), "-o", str(tmp_path / "a.onnx"), "--atol", "nan"], "--atol must be a positive number"),
        ([str(ckpt), "-o", "/proc/no/such/dir/a.onnx"], "cannot write to /proc/no/such/dir"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(["export", *args])
        err = capsys.readouterr().err.splitlines()
        assert info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


def test_checkpoint_of_another_network_is_one_line(module, tmp_path):
    ckpt = torch.load(_checkpoint(module, tmp_path / "run.ckpt"), weights_only=True)
    ckpt["styletrain"]["network"] = "light"
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(
        UserError, match=r"do not match network 'light': missing keys \[.*\(\d+\); unexpected keys \["
    ) as info:
        export(tmp_path / "other.ckpt", tmp_path / "x.safetensors")
    assert "\n" not in str(info.value) and len(str(info.value).replace(str(tmp_path), "")) < 300


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_onnx_export_follows_the_umask(module, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = export(_checkpoint(module, tmp_path / "run.ckpt"), tmp_path / "s.onnx")
        safetensors = export(tmp_path / "run.ckpt", tmp_path / "s.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(safetensors.stat().st_mode)
