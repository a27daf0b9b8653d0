"""Evidence that the temporal loss works without removing the style, and the validation-time temporal callback.

Same data, steps and seed, tiny network and random loss-net weights: training with the temporal loss (synthetic
motion on stills, at the balance of ``configs/video.yaml``) must lower the warping error clearly on a clip that was
never seen in training, while the output keeps the per-frame model's contrast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bench.temporal_grid import shipped_temporal_balance
from styletrain.output_stats import clip_stats
from styletrain.temporal.loss import clip_warping_error

from .conftest import small_module


def _module(style_path, seed: int = 0, temporal_weight: float = 0.0, **temporal):
    # A shallow content layer keeps the random VGG cheap on two cores; the temporal term is what is under test.
    return small_module(style_path, seed=seed, content_layers=("relu2_2",), temporal_weight=temporal_weight, **temporal)


def _train(style_path, stills: torch.Tensor, steps: int, seed: int = 0, lr: float = 0.01, **temporal):
    """A matched run: the same initial weights and batches whatever ``temporal`` is (the synthetic motion draws from
    the module's private generator, never from the data generator)."""
    # The original (aliasing) design: the alias-free tiny net barely flickers per frame in this 40-step regime, so
    # there is no direction to check on it. The balance of configs/video.yaml was re-derived for the alias-free
    # design at real sizes with the HED loss net (docs/equivariance.md); on this design it must still work.
    module = _module(style_path, seed, motion_seed=seed, network_kwargs={"alias_free": False}, **temporal)
    optimizer = torch.optim.Adam(module.net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(stills), (2,), generator=gen)
        motion = module.motion_generator() if module.temporal_on else None
        loss = module.loss_terms({"content": stills[idx]}, generator=motion)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


@torch.no_grad()
def _stylize(module, frames: list[np.ndarray]) -> list[np.ndarray]:
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    return list((module(x).clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy())


# Two settings that differ in every knob a user turns: style image, seed, learning rate, training length and crop
# size. The default has to hold in both, not just in the one it was tuned on. (Measured on setting 2 with relative
# perceptual weights, --model.style_balance 1, the same temporal balance gave 1.67x the per-frame warping error:
# the default is derived for absolute weights only; docs/temporal.md, "Training defaults across loss nets".)
SETTINGS = {
    "style42-seed0-lr1e-2-30steps-32px": {"style_seed": 42, "seed": 0, "lr": 0.01, "steps": 30, "size": 32},
    "style7-seed1-lr5e-3-40steps-40px": {"style_seed": 7, "seed": 1, "lr": 0.005, "steps": 40, "size": 40},
}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_temporal_loss_lowers_warping_error_on_unseen_clip(tmp_path, make_image, make_clip_frames, setting):
    cfg = SETTINGS[setting]
    style = tmp_path / "style.png"
    Image.fromarray(make_image(64, 64, seed=cfg["style_seed"])).save(style)
    stills = torch.from_numpy(np.stack([make_image(cfg["size"], cfg["size"], seed=100 + i) for i in range(8)]))
    stills = stills.permute(0, 3, 1, 2).float() / 255.0
    clip = make_clip_frames(8, size=(64, 96), shift=(3, 1), seed=7)  # unseen image, unseen size, real pan

    # A short run: the weight is calibrated over its first 10 steps (configs/video.yaml: 50 of a long run).
    temporal = {"temporal_balance": shipped_temporal_balance(), "temporal_calibration_steps": 10}
    runs = {"per-frame": cfg.get("options", {}), "temporal": cfg.get("options", {}) | temporal}
    errors, contrast = {}, {}
    for name, options in runs.items():
        module = _train(style, stills, steps=cfg["steps"], seed=cfg["seed"], lr=cfg["lr"], **options)
        outputs = _stylize(module, clip)
        errors[name] = clip_warping_error(clip, outputs, method="dis")
        contrast[name] = clip_stats(outputs)["contrast"]
    floor = clip_warping_error(clip, clip, method="dis")
    warp_ratio = errors["temporal"] / errors["per-frame"]
    contrast_ratio = contrast["temporal"] / contrast["per-frame"]
    # The targets (<= 0.5x warping error, >= 0.8x contrast) are measured on a real clip after 200 steps by
    # bench/temporal_sweep.py (docs/temporal.md); this 30-step CI run at the same balance must show the same direction
    # clearly.
    assert warp_ratio < 0.6, f"temporal / per-frame warping error {warp_ratio:.3f} ({errors}, floor {floor:.2e})"
    assert errors["temporal"] > floor  # still a stylization, not the input
    # Stable because consistent, not because the output went flat.
    assert contrast_ratio >= 0.8, f"temporal / per-frame contrast {contrast_ratio:.3f} ({contrast})"


class _Stills(Dataset):
    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = [torch.from_numpy(i).permute(2, 0, 1).float() / 255.0 for i in images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return {"content": self.images[idx]}


def test_validation_callback_logs_warping_error_and_clip(tmp_path, make_image):
    import av
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from styletrain.temporal.callback import TemporalValidation, pan_clip

    style = tmp_path / "style.png"
    Image.fromarray(make_image(64, 64, seed=42)).save(style)
    data = _Stills([make_image(48, 48, seed=i) for i in range(4)])
    module = _module(style, temporal_weight=0.0)
    callback = TemporalValidation(n_frames=4, shift=(3, 1), fps=4)
    trainer = pl.Trainer(
        max_steps=2,
        val_check_interval=2,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        logger=CSVLogger(tmp_path / "logs"),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, DataLoader(data, batch_size=2), DataLoader(data, batch_size=2))
    metrics = trainer.callback_metrics
    assert metrics["val/warping_error"] > metrics["val/input_warping_error"] >= 0
    clips = list((tmp_path / "logs").rglob("temporal_clips/*.mp4"))
    assert len(clips) == 1
    with av.open(str(clips[0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (44, 2 * 38, 3)  # input | stylized, even sides
    pan = pan_clip(make_image(48, 48), 4, (3, 1))
    assert len(pan) == 4 and pan[0].shape == (44, 38, 3)
