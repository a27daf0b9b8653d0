"""``styletrain evaluate``: one JSON line per model, floors, losses, notes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from inference.core.hashing import sha256_of_file
from inference.model.artifact import save_artifact
from inference.model.networks import build_network
from styletrain.data.video_frames import read_clip
from styletrain.evaluate import main, stylize_clip, training_hparams
from styletrain.losses import DEFAULT_STYLE_LAYERS
from styletrain.temporal.loss import clip_flows, warping_error


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """A local VGG16 ``features`` state_dict (random weights, but a real file given by path)."""
    from safetensors.torch import save_file

    from styletrain.vgg import build_features, random_init_

    features = build_features("vgg16")
    random_init_(features, seed=1)
    path = tmp_path_factory.mktemp("vgg") / "vgg16_features.safetensors"
    save_file({k: v.contiguous() for k, v in features.state_dict().items()}, str(path))
    return path


@pytest.fixture
def setup(tmp_path, make_image, make_video):
    style = tmp_path / "style.png"
    Image.fromarray(make_image(64, 64, seed=5)).save(style)
    models = []
    for i, temporal in enumerate((False, True)):
        torch.manual_seed(i)
        net = build_network("tiny")
        config = {"model": {"style": str(style), "style_size": 64, "vgg": "vgg16", "network": "tiny"}}
        models.append(
            save_artifact(
                tmp_path / f"m{i}.safetensors",
                net,
                style_name="style",
                style_sha256=sha256_of_file(style),
                config=config,
                temporal=temporal,
            )
        )
    clip = make_video(tmp_path / "clip.mp4", n_frames=6, size=(96, 64), audio=False)
    return {"style": style, "models": models, "clip": clip, "dir": tmp_path}


def _lines(capsys) -> list[dict]:
    out = capsys.readouterr().out.strip().splitlines()
    return [json.loads(line) for line in out]


def test_two_models_random_vgg_note(setup, capsys):
    args = ["--video", str(setup["clip"]), "--vgg-weights", "random", "--max-frames", "5"]
    for m in setup["models"]:
        args += ["--model", str(m)]
    main(args)
    results = _lines(capsys)
    assert len(results) == 2
    # The floor is the input clip's own warping error, measured independently here.
    frames = read_clip(setup["clip"], max_frames=5, max_side=640)
    floor = warping_error(frames, *clip_flows(frames, method="dis"))
    assert floor > 0 and results[0]["input_warping_error"] == pytest.approx(floor, rel=1e-6)
    for r, m in zip(results, setup["models"], strict=True):
        assert r["model"] == str(m) and r["style"] == "style" and r["frames"] == 5 and r["size"] == [96, 64]
        assert r["flow_method"] == "dis"
        assert r["warping_error"] > 0 and r["ratio_to_input"] == pytest.approx(r["warping_error"] / floor)
        assert r["fps"] > 0
        assert "content_loss" not in r and "style_loss" not in r and "random" in r["note"]
    assert [r["temporal"] for r in results] == [False, True]
    assert results[0]["input_warping_error"] == results[1]["input_warping_error"]  # one flow for all models


def test_losses_with_vgg_path_and_recorded_style(setup, vgg_file, capsys):
    clip = str(setup["clip"])
    main(["--model", str(setup["models"][0]), "--video", clip, "--vgg-weights", str(vgg_file), "--max-frames", "3"])
    (r,) = _lines(capsys)
    assert r["content_loss"] > 0 and r["style_loss"] > 0 and "note" not in r
    assert r["loss_net"].startswith("vgg16 ")
    by_layer = r["style_loss_by_layer"]  # the style layers (the defaults here), each > 0, summing to the style loss
    assert list(by_layer) == list(DEFAULT_STYLE_LAYERS) and min(by_layer.values()) > 0
    assert sum(by_layer.values()) == pytest.approx(r["style_loss"], rel=1e-5)


@pytest.mark.slow
def test_style_mismatch_warns_and_missing_style_notes(setup, vgg_file, make_image, capsys):
    other = setup["dir"] / "other.png"
    Image.fromarray(make_image(48, 48, seed=9)).save(other)
    common = ["--model", str(setup["models"][0]), "--video", str(setup["clip"]), "--vgg-weights", str(vgg_file)]
    common += ["--max-frames", "2"]
    main([*common, "--style", str(other)])
    captured = capsys.readouterr()
    assert "not the style this model was trained on" in captured.err
    assert json.loads(captured.out)["style_loss"] > 0
    setup["style"].unlink()  # the recorded path is gone: content loss only, with a note
    main(common)
    (r,) = _lines(capsys)
    assert "style_loss" not in r and "--style" in r["note"] and r["content_loss"] > 0


def test_frame_folder_clip(setup, make_clip_frames, capsys):
    folder = setup["dir"] / "frames"
    folder.mkdir()
    for i, f in enumerate(make_clip_frames(4, size=(48, 64))):
        Image.fromarray(f).save(folder / f"f{i}.png")
    main(["--model", str(setup["models"][1]), "--video", str(folder), "--vgg-weights", "random"])
    (r,) = _lines(capsys)
    assert r["frames"] == 4 and r["size"] == [64, 48]
    assert r["input_warping_error"] < 1e-3  # an exact integer pan: DIS and warping reproduce it


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_model", "no such file"),
        ("missing_clip", "no such file"),
        ("one_frame", "at least 2 frames"),
        ("bad_frames", "--max-frames"),
    ],
)
def test_bad_inputs_are_one_line_errors(setup, make_image, capsys, case, message):
    model, clip = str(setup["models"][0]), str(setup["clip"])
    extra: list[str] = []
    if case == "missing_model":
        model = str(setup["dir"] / "nope.safetensors")
    elif case == "missing_clip":
        clip = str(setup["dir"] / "nope.mp4")
    elif case == "one_frame":
        folder = setup["dir"] / "single"
        folder.mkdir()
        Image.fromarray(make_image(32, 32)).save(folder / "a.png")
        clip = str(folder)
    else:
        extra = ["--max-frames", "0"]
    with pytest.raises(SystemExit) as exc:
        main(["--model", model, "--video", clip, "--vgg-weights", "random", *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and message in err.lower()


def test_fps_of_a_clip_no_longer_than_one_batch_is_measured(monkeypatch, make_image):
    import time

    class SlowStylizer:  # 10 ms per frame: the true rate is at most 100 frames/s
        def __init__(self, net, options):
            pass

        def frames(self, frames):
            for frame in frames:
                time.sleep(0.01)
                yield frame

    monkeypatch.setattr("inference.engine.stylizer.Stylizer", SlowStylizer)
    frames = [make_image(16, 16, seed=i) for i in range(2)]
    outputs, fps = stylize_clip(None, frames, torch.device("cpu"), batch_size=4)
    assert len(outputs) == 2 and all(o is f for o, f in zip(outputs, frames, strict=True))
    assert 20 < fps <= 100  # not 2 frames over ~0 s
    outputs, fps = stylize_clip(None, [make_image(16, 16, seed=i) for i in range(6)], torch.device("cpu"), 4)
    assert len(outputs) == 6 and 20 < fps <= 100


def test_offline_loss_net_note_names_this_commands_flag_and_is_not_retried(setup, monkeypatch, tmp_path, capsys):
    import urllib.error

    from styletrain import vgg

    attempts = []

    def offline(arch):
        attempts.append(arch)
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub cache: the download is tried
    monkeypatch.setattr(vgg, "download_imagenet_state_dict", offline)
    args = ["--model", str(setup["models"][0]), "--video", str(setup["clip"]), "--max-frames", "2"]
    for _ in range(2):
        main(args)
        captured = capsys.readouterr()
        note = json.loads(captured.out)["note"]
        assert "--vgg-weights random" in note and "--model.vgg_weights" not in note
        assert "evaluate: estimating dis flow" in captured.err  # progress lines on stderr
    assert attempts == ["vgg16"]  # the second run did not try the network again


def test_contrast_colourfulness_ratios_and_flat_model_warning(setup, capsys):
    flat = build_network("tiny")
    last_conv = [m for m in flat.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # every output pixel becomes sigmoid(0) = 0.5 grey: a model whose style has faded away
        last_conv.weight.zero_()
        last_conv.bias.zero_()
    style = setup["style"]
    flat_path = save_artifact(
        setup["dir"] / "flat.safetensors", flat, style_name="style", style_sha256=sha256_of_file(style),
        config={"model": {"network": "tiny"}}, temporal=True,
    )  # fmt: skip
    per_frame = setup["models"][0]
    main(["--video", str(setup["clip"]), "--vgg-weights", "random", "--max-frames", "4",
          "--model", str(per_frame), "--model", str(flat_path)])  # fmt: skip
    captured = capsys.readouterr()
    reference, faded = (json.loads(line) for line in captured.out.strip().splitlines())
    assert reference["contrast"] > 0.01 and reference["colourfulness"] >= 0 and reference["input_contrast"] > 0.01
    assert faded["contrast"] == pytest.approx(0.0, abs=1e-3) and faded["colourfulness"] == pytest.approx(0.0, abs=1e-3)
    assert reference["contrast_ratio"] == pytest.approx(1.0)
    assert faded["contrast_ratio"] == pytest.approx(faded["contrast"] / reference["contrast"])
    assert faded["warping_error_ratio"] == pytest.approx(faded["warping_error"] / reference["warping_error"])
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all(str(flat_path) in line for line in warnings), warnings
    assert "per-frame model" in warnings[0] and "input clip" in warnings[1]


@pytest.mark.slow  # the loss network on every frame, then ten transforms of two frames
def test_equivariance_figures_per_transform(setup, capsys):
    main(["--model", str(setup["models"][0]), "--video", str(setup["clip"]), "--vgg-weights", "random"] + [
        "--max-frames", "2", "--equivariance"])  # fmt: skip
    (r,) = _lines(capsys)
    figures = r["equivariance"]
    stride = build_network("tiny").stride
    expected = {f"shift_{d}" for d in range(1, stride + 1)} | {"shift_0.25", "shift_0.5", "zoom_1.05", "rotate_2"}
    assert set(figures) == expected
    for values in figures.values():
        assert values["grey"] >= 0 and values["relative"] >= 0
    # The tiny network is alias-free: a shift by its whole stride is (up to the border) a shift of its output.
    assert figures[f"shift_{stride}"]["relative"] < 0.5
    assert r["stroke_detail"] > 0 and r["grain"] > 0


@pytest.mark.parametrize(
    "model",
    [
        {"style_layers": ["relu1_2"], "lr": 0.01},  # an artifact trained before the module's groups
        {"loss": {"style_layers": ["relu1_2"]}, "optimizer": {"class_path": "torch.optim.Adam"}},
        {"class_path": "styletrain.module.StyleTransferModule", "init_args": {"loss": {"style_layers": ["relu1_2"]}}},
    ],
)
def test_an_artifacts_loss_layers_are_read_in_either_config_layout(model):
    metadata = SimpleNamespace(config={"model": model})
    assert training_hparams(metadata)["loss"]["style_layers"] == ["relu1_2"]
