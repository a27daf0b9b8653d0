"""Matched comparisons: a run with the temporal term and the same run without it start from the same weights and see
the same images in the same order, so whatever differs between the two trained networks is the temporal term's."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from styletrain.data.module import StyleDataModule

from .conftest import small_module


class _Record(pl.Callback):
    """Keeps the net's initial state dict, every training batch's images and the global RNG state at the end."""

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.batches: list[torch.Tensor] = []
        self.rng_after: torch.Tensor | None = None

    def on_train_start(self, trainer, module) -> None:
        self.initial = {k: v.detach().clone() for k, v in module.net.state_dict().items()}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.batches.append(batch["content"].detach().clone())

    def on_train_end(self, trainer, module) -> None:
        self.rng_after = torch.get_rng_state()


def _run(folder, style_path, steps: int, **temporal) -> _Record:
    pl.seed_everything(0, verbose=False)
    module = small_module(style_path, **temporal)
    data = StyleDataModule(path=str(folder), image_size=32, batch_size=2, num_workers=0, val_size=1)
    record = _Record()
    trainer = pl.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        callbacks=[record],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)
    return record


@pytest.mark.slow
def test_temporal_and_per_frame_runs_are_matched(tmp_path, style_path, make_image_folder):
    folder = make_image_folder(tmp_path / "images", 6, size=(40, 48))
    per_frame = _run(folder, style_path, steps=4)
    temporal = _run(folder, style_path, steps=4, temporal={"balance": 0.1, "calibration_steps": 2})
    assert per_frame.initial.keys() == temporal.initial.keys()
    for key, value in per_frame.initial.items():
        torch.testing.assert_close(temporal.initial[key], value, rtol=0, atol=0, msg=key)
    assert len(per_frame.batches) == len(temporal.batches) == 4
    for a, b in zip(per_frame.batches, temporal.batches, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)  # same images, same crops, same order
    # The motion draws from its own generator: the global one is left exactly where the per-frame run leaves it.
    torch.testing.assert_close(temporal.rng_after, per_frame.rng_after, rtol=0, atol=0)
