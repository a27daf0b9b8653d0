"""One state-dict mismatch message: artifacts, training checkpoints and loss-network weights describe a wrong file
the same way (:func:`inference.model.artifact.state_dict_mismatch`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from inference.core.errors import UserError
from inference.model.artifact import load_artifact, save_artifact, state_dict_mismatch
from inference.model.networks import build_network
from styletrain.export import network_from_checkpoint
from styletrain.vgg import build_features, load_features_file


def _renamed(state: dict[str, torch.Tensor], old: str) -> dict[str, torch.Tensor]:
    """``state`` with ``old`` renamed to ``stray.weight``: one missing and one unexpected key."""
    return {("stray.weight" if k == old else k): v for k, v in state.items()}


def _reshaped(state: dict[str, torch.Tensor], key: str) -> dict[str, torch.Tensor]:
    return state | {key: torch.zeros(2, 2)}


def _artifact_error(tmp_path: Path, edit) -> str:
    from safetensors.torch import load_file, safe_open, save_file

    path = save_artifact(tmp_path / "a.safetensors", build_network("tiny"), config={}, temporal=False)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    save_file(edit(load_file(path)), str(path), metadata=metadata)
    with pytest.raises(UserError) as info:
        load_artifact(path)
    return str(info.value)


def _checkpoint_error(tmp_path: Path, edit) -> str:
    state = {f"net.{k}": v for k, v in edit(build_network("tiny").state_dict()).items()}
    with pytest.raises(UserError) as info:
        network_from_checkpoint({"styletrain": {"network": "tiny"}, "state_dict": state}, tmp_path / "run.ckpt")
    return str(info.value)


def _vgg_error(tmp_path: Path, edit) -> str:
    path = tmp_path / "vgg.pth"
    torch.save(edit(build_features("vgg16", 30).state_dict()), path)
    with pytest.raises(UserError) as info:
        load_features_file(path, "vgg16")
    return str(info.value)


@pytest.mark.parametrize("loader", [_artifact_error, _checkpoint_error, _vgg_error])
def test_every_loader_names_missing_unexpected_and_reshaped_keys_alike(tmp_path, loader):
    key = "encoder.0.1.weight" if loader is not _vgg_error else "0.weight"
    message = loader(tmp_path, lambda state: _renamed(state, key))
    assert message.endswith(f": missing keys [{key}] (1); unexpected keys [stray.weight] (1)"), message
    message = loader(tmp_path, lambda state: _reshaped(state, key))
    assert re.search(rf": tensor {re.escape(repr(key))} has shape \[2, 2\], expected \[\d+(, \d+)*\]$", message), (
        message
    )


def test_mismatch_lists_at_most_limit_keys_in_the_given_order():
    expected = {f"{i}.weight": torch.zeros(1) for i in (1, 2, 10)}
    assert state_dict_mismatch(expected, dict(expected)) is None
    order = lambda key: int(key.split(".")[0])  # noqa: E731
    assert state_dict_mismatch(expected, {}, sort_key=order, limit=2) == "missing keys [1.weight, 2.weight, ...] (3)"
    assert state_dict_mismatch(expected, expected | {"x": 1}) == "unexpected keys [x] (1)"
    assert state_dict_mismatch({"w": (3, 1)}, {"w": torch.zeros(1)}) == "tensor 'w' has shape [1], expected [3, 1]"
