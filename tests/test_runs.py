"""Run folders and logger settings (styletrain.runs), and the W&B logger's quieting, without training."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from jsonargparse import Namespace

from styletrain.runs import RUN_ID_ENV, checkpoint_root, new_run_id, newest_last_checkpoint, resolve_run_config


def _config(root: Path, **extra) -> Namespace:
    trainer = Namespace(default_root_dir=str(root), max_steps=-1, log_every_n_steps=50, logger=None)
    return Namespace(
        trainer=trainer, model=Namespace(style="styles/Starry.jpg"), checkpoint=Namespace(dirpath=None), **extra
    )


def test_run_ids_are_unique_and_sortable(tmp_path):
    now = time.mktime((2026, 11, 26, 1, 45, 0, 0, 0, -1))
    assert new_run_id(tmp_path, now) == "20261126-014500"
    (tmp_path / "20261126-014500").mkdir()
    assert new_run_id(tmp_path, now) == "20261126-014500-2"
    (tmp_path / "20261126-014500-2").mkdir()
    assert new_run_id(tmp_path, now) == "20261126-014500-3"


def test_newest_last_checkpoint_is_the_most_recently_written(tmp_path):
    assert newest_last_checkpoint(tmp_path) is None
    paths = []
    for i, name in enumerate(["b-run", "a-run", "."]):  # "." is the old, shared-folder layout
        path = tmp_path / name / "last.ckpt"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(10**18 + i * 10**9,) * 2)
        paths.append(path)
    assert newest_last_checkpoint(tmp_path) == paths[2]
    os.utime(paths[1], ns=(2 * 10**18,) * 2)
    assert newest_last_checkpoint(tmp_path) == paths[1]


def test_each_run_gets_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID_ENV, "")  # recorded, so the run id set below does not leak into other tests
    monkeypatch.delenv(RUN_ID_ENV)
    config = _config(tmp_path / "runs")
    resolve_run_config(config)
    run_dir = Path(config.checkpoint.dirpath)
    assert (
        run_dir.parent == checkpoint_root(str(tmp_path / "runs"), "Starry.jpg") == tmp_path / "runs/checkpoints/Starry"
    )
    assert os.environ[RUN_ID_ENV] == run_dir.name  # DDP workers re-run the command line and inherit it
    again = _config(tmp_path / "runs")
    resolve_run_config(again)
    assert again.checkpoint.dirpath == config.checkpoint.dirpath  # a DDP worker: the same folder
    monkeypatch.delenv(RUN_ID_ENV)
    run_dir.mkdir(parents=True)
    other = _config(tmp_path / "runs")
    resolve_run_config(other)
    assert Path(other.checkpoint.dirpath).parent == run_dir.parent and other.checkpoint.dirpath != str(run_dir)


def test_ckpt_path_last_resumes_the_newest_run(tmp_path, caplog):
    config = _config(tmp_path, ckpt_path="last")
    resolve_run_config(config, run_id="new")
    assert config.ckpt_path is None and config.checkpoint.dirpath == str(tmp_path / "checkpoints/Starry/new")
    assert "no last.ckpt" in caplog.text
    last = tmp_path / "checkpoints" / "Starry" / "20261126-014500" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    config = _config(tmp_path, ckpt_path="last")
    resolve_run_config(config, run_id="new")
    assert config.ckpt_path == str(last) and config.checkpoint.dirpath == str(last.parent)
    explicit = _config(tmp_path, ckpt_path=str(last))
    resolve_run_config(explicit, run_id="new")  # resuming from a named file starts a new folder
    assert explicit.ckpt_path == str(last) and explicit.checkpoint.dirpath.endswith("new")


@pytest.mark.parametrize(("max_steps", "expected"), [(-1, 50), (16, 1), (49, 4), (50, 50), (40_000, 50)])
def test_short_runs_log(tmp_path, max_steps, expected):
    config = _config(tmp_path)
    config.trainer.max_steps = max_steps
    resolve_run_config(config, run_id="r")
    assert config.trainer.log_every_n_steps == expected


def test_wandb_logger_settings(tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    logger = Namespace(
        class_path="pytorch_lightning.loggers.WandbLogger", init_args=Namespace(save_dir=".", offline=False)
    )
    csv = Namespace(class_path="pytorch_lightning.loggers.CSVLogger", init_args=Namespace(save_dir="."))
    config = _config(tmp_path / "runs")
    config.trainer.logger = [logger, csv]
    resolve_run_config(config, run_id="r")
    assert logger.init_args.offline is True and logger.init_args.save_dir == str(tmp_path / "runs")
    assert csv.init_args.save_dir == str(tmp_path / "runs") and "offline" not in csv.init_args
    assert "WANDB_MODE" not in os.environ
    monkeypatch.setenv("WANDB_MODE", "online")
    logger.init_args.offline = False
    resolve_run_config(config, run_id="r")
    assert logger.init_args.offline is False


def test_wandb_logger_is_quieted(tmp_path, monkeypatch):
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    from styletrain.cli_noise import quiet_wandb_logger

    monkeypatch.setenv("WANDB_MODE", "offline")  # recorded: the logger sets it when its run starts
    started: list[dict] = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: started.append(kwargs) or SimpleNamespace())
    for quiet in (False, True):
        folder = tmp_path / "runs" / str(quiet)
        logger = WandbLogger(save_dir=str(folder), offline=True)  # no run starts until first use
        if quiet:
            quiet_wandb_logger(logger)
        assert folder.is_dir() is quiet  # wandb's git-root lookup warns when its folder is missing
        assert logger.experiment is not None  # starts the run: wandb.init gets the logger's settings
    # The anonymous setting is what makes wandb warn that it is deprecated.
    assert ["anonymous" in kwargs for kwargs in started] == [True, False]


def test_known_noise_is_silenced_and_nothing_else(caplog):
    import logging
    import warnings

    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    from styletrain.cli_noise import silence_known_noise

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        silence_known_noise()  # idempotent
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use is_leaf()", FutureWarning, stacklevel=1)
        warnings.warn("Found 1 module(s) in eval mode at the start of training.", UserWarning, stacklevel=1)
        warnings.warn("an unrelated deprecation", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["an unrelated deprecation"]
    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger](https://pypi.org/)")
        rank_zero_info("GPU available: False, used: False")
    assert "litlogger" not in caplog.text and "GPU available" in caplog.text
