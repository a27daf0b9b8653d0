"""Training one network for several styles: per-style Gram targets, even style assignment, temporal pairs, the
repeated --style flag, and a two-style smoke fit whose artifact stylize-video runs with --style."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.core.errors import UserError
from inference.io.image_reader import read_image
from inference.model.artifact import read_metadata
from styletrain.cli import main

from .conftest import printed_config, small_module

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_styles(tmp_path: Path, make_image) -> list[str]:
    paths = []
    for name, seed in (("starry", 5), ("wave", 9)):
        path = tmp_path / f"{name}.png"
        Image.fromarray(make_image(80, 96, seed=seed)).save(path)
        paths.append(str(path))
    return paths


def _unchanged(x, return_features=False, style=None):
    """A network that returns its input: every module then scores the same image, whatever its weights."""
    return x


def test_grams_are_computed_once_per_style(two_styles) -> None:
    multi = small_module(two_styles)
    assert multi.net.num_styles == 2 and multi.style_names == ["starry", "wave"]
    targets = []
    set_style = multi.perceptual.set_style
    multi.perceptual.set_style = lambda image: (targets.append(image), set_style(image))[1]
    multi.net.forward = _unchanged
    content = torch.rand(1, 3, 32, 32)
    for i, path in enumerate(two_styles):
        single = small_module(path)
        single.net.forward = _unchanged
        with torch.no_grad():  # sample i is scored against style i's Grams, the ones a one-style module computes
            ours, its = multi.loss_terms({"content": content}, style_offset=i), single.loss_terms({"content": content})
        torch.testing.assert_close(ours["style"], its["style"])
    multi.loss_terms({"content": torch.rand(2, 3, 32, 32)})
    assert len(targets) == 2  # once per style, not once per batch


def test_styles_are_assigned_evenly_and_each_sample_uses_its_own(two_styles) -> None:
    module = small_module(two_styles)
    assert module.style_indices(4, 0).tolist() == [0, 1, 0, 1]
    assert module.style_indices(1, 0).tolist() == [0] and module.style_indices(1, 1).tolist() == [1]
    # A batch of one image per style: the style loss equals the mean of each sample against its own style.
    content = torch.rand(2, 3, 32, 32)
    terms = module.loss_terms({"content": content})
    with torch.no_grad():
        own = [module.loss_terms({"content": content[i : i + 1]}, style_offset=i)["style"] for i in range(2)]
        swapped = module.loss_terms({"content": content}, style_offset=1)["style"]
    torch.testing.assert_close(terms["style"], (own[0] + own[1]) / 2)
    assert not torch.isclose(terms["style"], swapped, rtol=1e-3, atol=0)  # the other style is another target
    terms["total"].backward()
    for name, param in module.net.named_parameters():
        if param.dim() == 2:  # [S, C] conditional norm parameters: every style learns from its own samples
            assert (param.grad.abs().amax(dim=1) > 0).all(), name


def test_temporal_pairs_keep_one_style_per_pair(two_styles) -> None:
    module = small_module(two_styles, temporal={"weight": 1.0, "feature_weight": 1.0})
    seen = []
    real = module.net.forward

    def spy(x, return_features=False, style=None):
        seen.append(style)
        return real(x, return_features=return_features, style=style)

    module.net.forward = spy
    terms = module.loss_terms({"content": torch.rand(2, 3, 48, 48)}, style_offset=1)
    assert torch.isfinite(terms["temporal"]) and torch.isfinite(terms["temporal_feature"])
    (style,) = seen
    assert style.argmax(dim=1).tolist() == [1, 0, 1, 0]  # frame1 batch then frame2 batch, same styles


def test_bad_multi_style_settings_are_user_errors(two_styles, tmp_path) -> None:
    other = tmp_path / "sub"
    other.mkdir()
    (other / "starry.png").write_bytes(Path(two_styles[0]).read_bytes())
    with pytest.raises(UserError, match="two style images are named 'starry'"):
        small_module([two_styles[0], str(other / "starry.png")])
    with pytest.raises(UserError, match="num_styles=3 but 2 style images"):
        small_module(two_styles, network_kwargs={"num_styles": 3})


def test_repeated_style_flag_becomes_one_list(two_styles, capsys) -> None:
    a, b = two_styles  # (one --style stays a string: tests/test_styletrain_cli.py)
    config = printed_config(capsys, "fit", "--style", a, "--data.path", "p", f"--style={b}")
    assert config["model"]["style"] == [a, b] and config["data"]["path"] == "p"


@pytest.mark.slow
def test_two_style_smoke_fit_gives_one_artifact_that_stylize_video_runs(
    two_styles, tmp_path, monkeypatch, capsys, make_image
):
    from inference.app.cli import main as stylize

    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_image(72, 90, seed=1)).save(tmp_path / "photo.png")
    (tmp_path / "photos").mkdir()
    for i in range(6):
        Image.fromarray(make_image(72, 90, seed=20 + i)).save(tmp_path / "photos" / f"{i}.png")
    smoke = str(REPO / "configs" / "smoke.yaml")
    args = ["fit", "--config", smoke, "--style", "starry.png", "--style", "wave.png", "--data.path", "photos"]
    main([*args, "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--artifact.path", "m.safetensors"])
    meta = read_metadata(tmp_path / "m.safetensors")
    assert meta.style_names == ["starry", "wave"] and meta.network_kwargs["num_styles"] == 2
    assert [len(s.sha256) for s in meta.styles] == [64, 64]
    assert (tmp_path / "runs" / "smoke" / "checkpoints" / "starry+wave").is_dir()
    samples = tmp_path / "runs" / "smoke" / "version_0" / "samples"
    assert sorted(p.name for p in samples.glob("style_*.png")) == ["style_starry.png", "style_wave.png"]
    assert any(samples.glob("step_*_starry.png")) and any(samples.glob("step_*_wave.png"))
    capsys.readouterr()
    outs = []
    for spec in ("starry", "wave", "starry:0.5,wave:0.5"):
        out = tmp_path / f"out{len(outs)}.png"
        assert stylize(["photo.png", "-m", "m.safetensors", "-o", str(out), "-q", "--style", spec]) == 0
        outs.append(read_image(out))
    assert all(o.shape == (72, 90, 3) for o in outs)
    assert not np.array_equal(outs[0], outs[1])
    with pytest.raises(SystemExit) as exc:
        stylize(["photo.png", "-m", "m.safetensors", "-o", "x.png", "--style", "mona"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err == ["error: --style: unknown style 'mona'; this model has: 'starry', 'wave'"]
