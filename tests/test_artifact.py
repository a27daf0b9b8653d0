"""Artifact save/load: bit-exact round trip, strict checks and one-line errors for bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.core.errors import ArtifactError, UserError
from inference.model.artifact import (
    FORMAT_VERSION,
    ArtifactMetadata,
    clean_state_dict,
    load_artifact,
    read_metadata,
    save_artifact,
    unwrap_network,
)
from inference.model.networks import build_network

CONFIG = {"model": {"network": "tiny", "lr": 1e-3, "layers": ["relu1_2", "relu2_2"]}, "seed": 7, "path": Path("/x")}


def _save(path: Path, net: torch.nn.Module | None = None, **overrides) -> Path:
    torch.manual_seed(0)
    net = net if net is not None else build_network("tiny")
    kwargs = {"style_name": "starry", "style_sha256": "ab" * 32, "config": CONFIG, "temporal": True} | overrides
    return save_artifact(path, net, **kwargs)


def _assert_one_line_error(path: Path, match: str) -> None:
    with pytest.raises(ArtifactError) as info:
        load_artifact(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    assert match in message, message


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = build_network("tiny").eval()
    # Perturb the norm parameters too, so that non-default values are checked.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = _save(tmp_path / "a" / "style.safetensors", net)
    assert path == tmp_path / "a" / "style.safetensors" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["style.safetensors"]  # no temp file left behind

    artifact = load_artifact(path)
    loaded = artifact.network
    assert artifact.path == path
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    original, restored = net.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    for key in original:
        assert original[key].dtype == restored[key].dtype
        assert torch.equal(original[key], restored[key]), key
    x = torch.rand(2, 3, 29, 35)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_metadata_round_trip(tmp_path: Path) -> None:
    net = build_network("light", channels=(8, 16, 24), num_residual=2)
    path = _save(tmp_path / "m.safetensors", net, temporal=False)
    meta = read_metadata(path)
    assert isinstance(meta, ArtifactMetadata)
    assert meta == load_artifact(path).metadata
    assert meta.format_version == FORMAT_VERSION
    assert meta.network == "light"
    assert meta.network_kwargs == {"channels": [8, 16, 24], "num_residual": 2, "alias_free": True}
    assert meta.style_name == "starry" and meta.style_sha256 == "ab" * 32
    assert meta.temporal is False
    # Non-JSON values (a Path) are stored as strings; everything else survives unchanged.
    assert meta.config == json.loads(json.dumps(CONFIG, default=str))
    assert set(meta.versions) == {"torch", "safetensors", "styletrain", "python"}
    assert _save(tmp_path / "t.safetensors").exists() and read_metadata(tmp_path / "t.safetensors").temporal is True


class _Wrapper(torch.nn.Module):
    """Stands in for DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers without their start-up cost."""

    def __init__(self, attr: str, inner: torch.nn.Module) -> None:
        super().__init__()
        setattr(self, attr, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_saved_keys_have_no_wrapper_prefixes(tmp_path: Path) -> None:
    net = build_network("tiny")
    wrapped = _Wrapper("module", _Wrapper("_orig_mod", net))
    assert all(k.startswith("module._orig_mod.") for k in wrapped.state_dict())
    path = _save(tmp_path / "c.safetensors", wrapped)
    keys = set(load_file(path))
    assert keys == set(net.state_dict())
    assert read_metadata(path).network == "tiny"


@pytest.mark.slow  # a second process or a real-time wait: over a second; the quick part stays under a minute
def test_unwrap_network_sees_through_torch_compile_and_data_parallel() -> None:
    net = build_network("tiny")
    compiled = torch.compile(net)  # nothing is compiled until it is called
    assert compiled.name == "tiny"  # the compile wrapper forwards look-ups, so ``name`` cannot tell it apart
    assert unwrap_network(compiled) is net
    assert unwrap_network(torch.nn.DataParallel(compiled)) is net
    assert unwrap_network(_Wrapper("module", _Wrapper("_orig_mod", net))) is net
    assert unwrap_network(net) is net


@pytest.mark.slow
def test_torch_compile_wrapper_is_unwrapped(tmp_path: Path) -> None:
    net = build_network("tiny")
    path = _save(tmp_path / "c.safetensors", torch.compile(net))  # only wraps; nothing compiles until called
    assert set(load_file(path)) == set(net.state_dict())


def test_clean_state_dict() -> None:
    t = torch.zeros(1)
    state = {
        "module._orig_mod.net.a.weight": t,
        "net._orig_mod.b.bias": t,
        "_orig_mod.net.c": t,
        "loss_net.features.0.weight": t,
        "plain": t,
    }
    assert list(clean_state_dict(state)) == [
        "net.a.weight",
        "net.b.bias",
        "net.c",
        "loss_net.features.0.weight",
        "plain",
    ]
    assert clean_state_dict(state, prefix="net.") == {"a.weight": t, "b.bias": t, "c": t}
    assert clean_state_dict(state)["plain"] is t
    assert "module._orig_mod.net.a.weight" in state  # input untouched


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path / "nope.safetensors", "no such file")
    with pytest.raises(ArtifactError):
        read_metadata(tmp_path / "nope.safetensors")


def test_directory_is_refused(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path, "not a file")


@pytest.mark.parametrize("keep", [4, 12, 200, -10])
def test_truncated_file(tmp_path: Path, keep: int) -> None:
    path = _save(tmp_path / "trunc.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    _assert_one_line_error(path, "")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.safetensors"
    path.write_bytes(os.urandom(4096))
    _assert_one_line_error(path, "safetensors")


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("hello, this is not a model\n" * 5)
    _assert_one_line_error(path, "safetensors")


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({k: v.contiguous() for k, v in build_network("tiny").state_dict().items()}, str(path))
    _assert_one_line_error(path, "not a styletrain artifact")
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    _assert_one_line_error(path, "not a styletrain artifact")


def _rewrite(path: Path, tensors: dict | None = None, **meta_changes: str) -> None:
    """Re-save an artifact with changed tensors and/or metadata fields."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    metadata.update(meta_changes)
    save_file(tensors if tensors is not None else load_file(path), str(path), metadata=metadata)


def test_newer_format_version(tmp_path: Path) -> None:
    path = _save(tmp_path / "new.safetensors")
    _rewrite(path, format_version=str(FORMAT_VERSION + 1))
    _assert_one_line_error(path, "newer")


def test_unknown_network(tmp_path: Path) -> None:
    path = _save(tmp_path / "unknown.safetensors")
    _rewrite(path, network="resnet9000")
    _assert_one_line_error(path, "unknown network 'resnet9000'")


def test_bad_network_kwargs(tmp_path: Path) -> None:
    path = _save(tmp_path / "kwargs.safetensors")
    _rewrite(path, network_kwargs="{not json")
    _assert_one_line_error(path, "network_kwargs")


def test_unexpected_and_missing_keys(tmp_path: Path) -> None:
    path = _save(tmp_path / "keys.safetensors")
    tensors = load_file(path)
    _rewrite(path, tensors | {"extra.weight": torch.zeros(3)})
    _assert_one_line_error(path, "unexpected keys [extra.weight]")
    del tensors["encoder.0.1.weight"]
    _rewrite(path, tensors)
    _assert_one_line_error(path, "missing keys [encoder.0.1.weight]")


def test_wrong_shape(tmp_path: Path) -> None:
    path = _save(tmp_path / "shape.safetensors")
    tensors = load_file(path)
    tensors["encoder.0.1.weight"] = torch.zeros(8, 3, 3, 3)
    _rewrite(path, tensors)
    _assert_one_line_error(path, "'encoder.0.1.weight' has shape [8, 3, 3, 3]")


def test_non_floating_tensor(tmp_path: Path) -> None:
    path = _save(tmp_path / "int.safetensors")
    tensors = load_file(path)
    tensors["encoder.0.1.weight"] = tensors["encoder.0.1.weight"].to(torch.int32)
    _rewrite(path, tensors)
    _assert_one_line_error(path, "non-floating dtype")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float) -> None:
    path = _save(tmp_path / "diverged.safetensors")
    tensors = load_file(path)
    key = sorted(tensors)[-1]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[[0, -1]] = bad
    _rewrite(path, tensors)
    _assert_one_line_error(path, f"tensor {key!r} has 2 NaN or infinite values of {tensors[key].numel()}")


def test_errors_are_user_errors(tmp_path: Path) -> None:
    assert issubclass(ArtifactError, UserError)


@pytest.mark.slow  # a second Python start-up in the quick suite: test_cli_imports_only_the_runtime checks the same
def test_loading_in_a_runtime_only_process(tmp_path: Path) -> None:
    path = _save(tmp_path / "sub.safetensors")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from inference.model.artifact import load_artifact
        art = load_artifact({str(path)!r})
        out = art.network(torch.rand(1, 3, 21, 19))
        assert out.shape == (1, 3, 21, 19), out.shape
        heavy = [m for m in ("pytorch_lightning", "lightning", "wandb", "datasets", "styletrain", "torchvision")
                 if m in sys.modules]
        print("heavy:", heavy)
        assert not heavy[:5], heavy
        print("ok", art.metadata.network)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok tiny" in result.stdout
