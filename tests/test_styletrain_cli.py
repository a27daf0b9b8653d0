"""The ``styletrain`` CLI end to end: smoke fit -> artifact, resume, help, one-line errors, W&B offline, DDP."""

from __future__ import annotations

import csv
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from styletrain.cli import main
from styletrain.module_config import FLAT_NAMES

from .conftest import printed_config

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke.yaml")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch, make_image, make_image_folder) -> Path:
    """A working folder with a style image and 8 content images; the CLI's relative outputs land here."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_image(96, 80, seed=7)).save(tmp_path / "Starry.png")
    make_image_folder(tmp_path / "photos" / "nested", 8, size=(72, 90))
    return tmp_path


def _fit_args(*extra: str) -> list[str]:
    return ["fit", "--config", SMOKE, "--style", "Starry.png", "--data.path", "photos", *extra]


def _artifact_loads_without_training_stack(path: Path) -> str:
    code = textwrap.dedent(
        f"""
        import sys
        import torch
        from inference.model.artifact import load_artifact
        artifact = load_artifact({str(path)!r})
        out = artifact.network(torch.rand(1, 3, 30, 34))
        assert out.shape == (1, 3, 30, 34) and 0 <= out.min() and out.max() <= 1
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"pytorch_lightning", "lightning", "wandb",
                                                                   "datasets", "styletrain"}})
        assert not heavy, heavy
        print(artifact.metadata.network, artifact.metadata.style_name)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _steps(metrics: Path) -> list[int]:
    with metrics.open() as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def _run_dirs(workdir: Path) -> list[Path]:
    return sorted(p for p in (workdir / "runs" / "smoke" / "checkpoints" / "Starry").iterdir() if p.is_dir())


@pytest.mark.slow
def test_smoke_fit_writes_artifact_then_resumes(workdir, capsys):
    # log_every_n_steps 50 > max_steps: shortened for the run, so train/* metrics still reach the logger.
    main(_fit_args("--trainer.max_steps", "6", "--trainer.val_check_interval", "3", "--trainer.log_every_n_steps=50"))
    out = capsys.readouterr().out
    artifact = workdir / "artifacts" / "smoke.safetensors"
    assert out.strip().splitlines()[-1] == "artifacts/smoke.safetensors"  # the path is the last line
    assert artifact.is_file() and artifact.stat().st_size < 200_000
    assert _artifact_loads_without_training_stack(artifact) == "tiny Starry"
    with (workdir / "runs" / "smoke" / "version_0" / "metrics.csv").open() as f:
        assert any(row.get("train/total") for row in csv.DictReader(f))

    (ckpt_dir,) = _run_dirs(workdir)  # runs/smoke/checkpoints/<style>/<run-id>/
    first = torch.load(ckpt_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert first["global_step"] == 6 and first["optimizer_states"]
    assert not any("loss_net" in k for k in first["state_dict"])  # VGG never saved
    assert first["styletrain"]["config"]["data"]["path"] == "photos"  # resolved config travels with the weights
    assert any((workdir / "runs" / "smoke" / "version_0" / "samples").glob("step_*.png"))
    assert (workdir / "runs" / "smoke" / "version_0" / "config.yaml").is_file()

    main(_fit_args("--trainer.max_steps", "8", "--trainer.val_check_interval", "3", "--ckpt_path", "last"))
    assert _run_dirs(workdir) == [ckpt_dir]  # resumed in the same run folder
    resumed = torch.load(ckpt_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert resumed["global_step"] == 8
    steps = _steps(workdir / "runs" / "smoke" / "version_1" / "metrics.csv")
    assert steps and min(steps) > 6  # continued, not restarted from step 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "artifacts/smoke.safetensors"

    # A new run of the same style: its own folder, never last-v1.ckpt beside the first run's files.
    main(_fit_args("--trainer.max_steps", "2", "--trainer.val_check_interval", "2"))
    dirs = _run_dirs(workdir)
    assert len(dirs) == 2 and dirs[0] == ckpt_dir
    assert not [p.name for d in dirs for p in d.iterdir() if "-v" in p.name]
    fresh = torch.load(dirs[1] / "last.ckpt", weights_only=True, map_location="cpu")
    assert fresh["global_step"] == 2
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True, map_location="cpu")["global_step"] == 8


def _flat_layout(hparams: dict) -> dict:
    """Grouped hyper-parameters as the module stored them before the groups (the inverse of ``FLAT_NAMES``)."""
    flat = {k: v for k, v in hparams.items() if k not in ("loss", "temporal", "optimizer", "schedule")}
    for name, path in FLAT_NAMES.items():
        value = hparams
        for key in path.split("."):
            value = value[key]
        flat[name] = value
    return flat | {"export_path": "artifacts/old.safetensors"}


@pytest.mark.slow
def test_fit_resumes_from_a_checkpoint_of_the_flat_layout(workdir, capsys):
    main(_fit_args("--trainer.max_steps", "2", "--trainer.val_check_interval", "2"))
    (first,) = _run_dirs(workdir)
    checkpoint = torch.load(first / "last.ckpt", weights_only=True, map_location="cpu")
    checkpoint["hyper_parameters"] = _flat_layout(checkpoint["hyper_parameters"]) | {"lr": 0.02, "tv_weight": 0.5}
    torch.save(checkpoint, workdir / "old.ckpt")
    main(_fit_args("--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--ckpt_path", "old.ckpt"))
    assert capsys.readouterr().out.strip().splitlines()[-1] == "artifacts/smoke.safetensors"
    (resumed,) = [d for d in _run_dirs(workdir) if d != first]
    last = torch.load(resumed / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 4
    hparams = last["hyper_parameters"]  # the old checkpoint's values, in their groups
    assert hparams["optimizer"]["init_args"]["lr"] == 0.02 and hparams["loss"]["tv_weight"] == 0.5
    assert "lr" not in hparams and "export_path" not in hparams


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("fit", "validate", "export", "evaluate"):  # one line each, under "commands:"
        assert len([line for line in text.splitlines() if line.startswith(f"  {command} ")]) == 1, text
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--style PATH" in text and "--model.style" in text and "--data.path" in text and "--artifact.path" in text
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "OUT.onnx" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "usage" in capsys.readouterr().out.lower()


def _one_line_error(capsys, args: list[str], match: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0], err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == errors[0]


def test_user_errors_are_one_line(workdir, capsys):
    _one_line_error(capsys, _fit_args("--style", "missing.jpg"), "missing.jpg")
    (workdir / "notes.jpg").write_text("not an image")
    _one_line_error(capsys, _fit_args("--style", "notes.jpg"), "notes.jpg")
    (workdir / "empty").mkdir()
    _one_line_error(capsys, _fit_args("--data.path", "empty"), "empty")
    _one_line_error(capsys, _fit_args("--model.network", "resnet"), "unknown network 'resnet'")
    _one_line_error(capsys, ["fit", "--data.path", "photos"], "--style is required")
    _one_line_error(capsys, ["train", "--style", "Starry.png"], "unknown command 'train'")


@pytest.mark.slow  # a second process or a real-time wait: over a second; the quick part stays under a minute
def test_errors_name_the_flag_the_library_names_the_field(workdir, capsys):
    """The modules raise OptionError naming their field; the CLI says it with the flag the user typed."""
    _one_line_error(
        capsys, _fit_args("--model.loss.style_weight", "-1"), "--model.loss.style_weight must be >= 0, got -1"
    )
    _one_line_error(capsys, _fit_args("--data.image_size", "8"), "--data.image_size must be >= 16, got 8")
    _one_line_error(
        capsys, _fit_args("--data.video_pair_ratio", "0.5"), "--data.video_pair_ratio > 0 needs --data.video_pairs"
    )
    _one_line_error(
        capsys,
        _fit_args("--model.temporal.weight", "1", "--model.temporal.balance", "0.5"),
        "--model.temporal.weight and --model.temporal.balance are mutually exclusive",
    )


class _Payload:
    """Unpickling this would create the file ``marker``: proof that no code ran if it does not exist."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["random", "text", "payload", "protocol2-payload", "weights-only", "foreign"])
def test_bad_ckpt_path_is_one_line(workdir, capsys, kind):
    bad = workdir / f"{kind}.ckpt"
    marker = workdir / "PWNED"
    if kind == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        bad.write_text("epoch=3\nthis is not a checkpoint\n")
    elif kind.endswith("payload"):
        bad.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=2 if "2" in kind else 4))
    elif kind == "weights-only":  # a styletrain checkpoint without optimizer state cannot resume fit
        torch.save({"state_dict": {}, "hyper_parameters": {"network": "tiny"}}, bad)
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"lr": 1.0}}, bad)
    _one_line_error(capsys, _fit_args("--ckpt_path", bad.name), f"--ckpt_path {bad.name}: ")
    assert not marker.exists()
    assert not (workdir / "runs").exists()  # nothing written


def test_missing_tensorboard_names_the_extra(workdir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    _one_line_error(capsys, _fit_args("--trainer.logger", "TensorBoardLogger"), "pip install 'styletrain[tensorboard]'")
    assert not (workdir / "runs").exists()


def test_bad_data_path_starts_no_wandb_run(workdir, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = _fit_args("--data.path", "nowhere", "--trainer.logger", "WandbLogger")
    _one_line_error(capsys, args, "nowhere")
    assert not list(workdir.rglob("wandb"))  # no offline run was created (and no `wandb sync` hint printed)


def test_print_config_shows_what_runs(workdir, capsys, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))
    common = ["fit", "--style", "Starry.png", "--trainer.default_root_dir", "out", "--trainer.max_steps", "20"]
    config = printed_config(capsys, *common)
    init = config["trainer"]["logger"]["init_args"]
    assert init["offline"] is True and init["save_dir"] == "out"  # no API key: offline, under default_root_dir
    assert "WANDB_MODE" not in os.environ  # printing changed nothing
    assert config["trainer"]["log_every_n_steps"] == 2  # 20 steps < 50: shortened so the run logs
    assert Path(config["checkpoint"]["dirpath"]).parent == Path("out/checkpoints/Starry")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert printed_config(capsys, *common)["trainer"]["logger"]["init_args"]["offline"] is False
    assert not (workdir / "out").exists()


def test_list_options_take_a_yaml_list_or_appends(workdir, capsys):
    config = printed_config(capsys, "fit", "--style", "Starry.png", "--data.video_pairs", "[clip.mp4, frames/]")
    assert config["data"]["video_pairs"] == ["clip.mp4", "frames/"]
    appended = printed_config(capsys, "fit", "--style", "Starry.png", "--data.videos+=a.mp4", "--data.videos+=b.mp4")
    assert appended["data"]["videos"] == ["a.mp4", "b.mp4"] and appended["model"]["style"] == "Starry.png"
    layers = printed_config(capsys, "fit", "--style=Starry.png", "--model.loss.style_layers", "[relu1_2]")
    assert layers["model"]["loss"]["style_layers"] == ["relu1_2"]
    with pytest.raises(SystemExit) as info:  # words after the flag: the parser says how to write a list
        main(["fit", "--style", "Starry.png", "--data.video_pairs", "clip.mp4", "frames/", "--print_config"])
    assert info.value.code == 2 and "--data.video_pairs '[a, b]'" in capsys.readouterr().err


def test_command_line_style_replaces_the_config_s(workdir, capsys, tmp_path):
    config = tmp_path / "styled.yaml"
    config.write_text("model:\n  style: Config.png\n")
    assert printed_config(capsys, "fit", "--config", str(config))["model"]["style"] == "Config.png"
    one = printed_config(capsys, "fit", "--config", str(config), "--style", "Starry.png")
    assert one["model"]["style"] == "Starry.png"  # replaced, not added to
    two = printed_config(
        capsys, "fit", "--config", str(config), "--style", "a.png", "--model.vgg", "vgg19", "--style=b.png"
    )
    assert two["model"]["style"] == ["a.png", "b.png"] and two["model"]["vgg"] == "vgg19"
    assert printed_config(capsys, "fit", "--model.style", "Long.png")["model"]["style"] == "Long.png"


@pytest.mark.slow
def test_wandb_offline_by_default_without_key(workdir, monkeypatch, capsys):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.setenv(var, "")  # recorded, so whatever the run sets is undone after the test
        monkeypatch.delenv(var)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))  # not silenced: the warnings checked below would hide
    main(  # also bf16 autocast on the CPU
        _fit_args(
            "--trainer.precision",
            "bf16-mixed",
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.logger",
            "pytorch_lightning.loggers.WandbLogger",
            "--trainer.logger.init_args.project",
            "test",
        )
    )
    out = capsys.readouterr()
    assert "anonymous setting" not in out.err and "git root" not in out.err and "LeafSpec" not in out.err
    runs = list((workdir / "runs" / "smoke" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = {p.name for p in runs[0].rglob("*")}
    assert "config.yaml" in files and any(name.endswith(".wandb") for name in files)
    assert out.out.strip().splitlines()[-1] == "artifacts/smoke.safetensors"


@pytest.mark.slow
def test_ddp_two_cpu_processes(workdir):
    env = dict(os.environ, WANDB_MODE="offline", OMP_NUM_THREADS="1")
    args = _fit_args(
        "--trainer.max_steps",
        "4",
        "--trainer.val_check_interval",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
    )
    result = subprocess.run(
        [sys.executable, "-m", "styletrain.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "artifacts/smoke.safetensors"
    assert _artifact_loads_without_training_stack(workdir / "artifacts" / "smoke.safetensors") == "tiny Starry"
    (run_dir,) = _run_dirs(workdir)  # both processes used the same run folder
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 4, sorted(p.name for p in run_dir.iterdir())


def test_wandb_mode_detection(tmp_path):
    from styletrain.loggers import configure_wandb_mode, wandb_api_key_configured

    netrc = tmp_path / "netrc"
    env = {"NETRC": str(netrc)}
    assert not wandb_api_key_configured(env)
    assert configure_wandb_mode(env) == "offline" and env["WANDB_MODE"] == "offline"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    env = {"NETRC": str(netrc)}
    assert configure_wandb_mode(env) == "online" and "WANDB_MODE" not in env
    assert configure_wandb_mode({"NETRC": str(netrc), "WANDB_MODE": "disabled"}) == "disabled"
    assert wandb_api_key_configured({"WANDB_API_KEY": "x" * 40, "NETRC": str(tmp_path / "none")})


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_bf16_channels_last_compile(workdir, capsys):
    args = ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
    args += ["--model.channels_last", "true", "--model.compile", "true", "--model.temporal.weight", "1e4"]
    main(_fit_args("--trainer.max_steps", "4", "--trainer.val_check_interval", "2", *args))
    assert capsys.readouterr().out.strip().splitlines()[-1] == "artifacts/smoke.safetensors"
    assert _artifact_loads_without_training_stack(workdir / "artifacts" / "smoke.safetensors") == "tiny Starry"
