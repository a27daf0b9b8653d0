"""Every YAML in ``configs/`` is tested data: it parses through the ``styletrain`` CLI and its values are applied."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from styletrain.cli import main
from styletrain.cli_lightning import TRAINER_DEFAULTS
from styletrain.runs import RUN_ID_ENV

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as info:
        main(["fit", *args, "--print_config"])
    captured = capsys.readouterr()
    assert info.value.code in (0, None), captured.err
    return yaml.safe_load(captured.out)


def _assert_applied(expected, resolved, where: str = "") -> None:
    """Every value written in the YAML file appears in the resolved config (which also holds all the defaults)."""
    if isinstance(expected, dict):
        assert isinstance(resolved, dict), where
        for key, value in expected.items():
            if where == "model." and key == "style":
                continue  # overridden on the command line
            assert key in resolved, f"{where}{key} missing from the resolved config"
            _assert_applied(value, resolved[key], f"{where}{key}.")
    elif isinstance(expected, list):
        assert isinstance(resolved, list) and len(resolved) == len(expected), where
        for i, (e, r) in enumerate(zip(expected, resolved, strict=True)):
            _assert_applied(e, r, f"{where}{i}.")
    else:
        assert resolved == expected, f"{where}: {resolved!r} != {expected!r}"


def test_there_are_configs():
    names = {p.name for p in CONFIGS}
    assert {"default.yaml", "smoke.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_through_cli(config, capsys):
    resolved = _print_config(capsys, "--config", str(config), "--style", "painting.jpg")
    assert resolved["model"]["style"] == "painting.jpg"
    for section in ("trainer", "model", "data"):
        assert section in resolved
    raw = yaml.safe_load(config.read_text())
    _assert_applied(raw, resolved)
    # class_path strings use one Lightning namespace only.
    assert "lightning.pytorch" not in config.read_text()


def test_code_defaults_are_the_default_config(capsys, monkeypatch):
    """``styletrain fit --style x`` without --config resolves to configs/default.yaml."""
    monkeypatch.setenv(RUN_ID_ENV, "run-1")  # the run folder's name, otherwise the start time
    from_file = _print_config(capsys, "--config", str(CONFIGS[0].parent / "default.yaml"), "--style", "p.jpg")
    from_code = _print_config(capsys, "--style", "p.jpg")
    assert from_code == from_file
    assert from_code["trainer"]["max_steps"] == TRAINER_DEFAULTS["max_steps"] == 40_000
    data, model = from_code["data"], from_code["model"]
    assert (data["image_size"], data["batch_size"], model["optimizer"]["init_args"]["lr"]) == (256, 4, 1e-3)
    assert model["optimizer"]["class_path"] == "torch.optim.Adam" and model["schedule"]["decay"] == "constant"
    assert from_code["checkpoint"]["dirpath"] == "runs/checkpoints/p/run-1"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("learning_rate_typo: 0.1", "learning_rate_typo"),
        ("loss: {style_wieght: 1.0}", "style_wieght"),
        ("temporal: {motion: {warp_speed: 9}}", "warp_speed"),
        ("lr: 0.1", "lr"),  # a flat name of the layout before the groups
    ],
)
def test_invalid_config_is_rejected(tmp_path, capsys, entry, key):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  style: p.jpg\n  {entry}\n")
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(bad), "--print_config"])
    assert info.value.code == 2
    assert key in capsys.readouterr().err


def test_channels_last_is_advised_only_with_compile():
    """The CUDA reflection-pad kernel returns NCHW (checked on a GPU in test_networks.py), so eager
    channels_last converts layouts around every padded convolution: the config must not advise it for GPUs."""
    import yaml

    root = Path(__file__).parents[1]
    text = (root / "configs/default.yaml").read_text()
    assert yaml.safe_load(text)["model"]["channels_last"] is False
    assert "true on GPUs: faster" not in text and "only with compile" in text
    from styletrain.module import StyleTransferModule

    assert "only together with ``compile``" in " ".join(StyleTransferModule.__doc__.split())
