"""What ``python -m bench.gpu_check`` measures and with what: the full plan on a GPU or the CPU dry run at tiny sizes,
the context every section gets (its budget, the report, scratch files made once), the repeated timing of a row, and
the generated clips.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.check_guard import Budget, Report

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ARTIFACT = ROOT / "docs" / "models" / "starry_night+great_wave-hed-light.safetensors"
#: The consistency ``stylize-video`` runs at by default (the API's default is 0).
DEFAULT_CONSISTENCY = 0.8


@dataclass(frozen=True)
class Plan:
    """What the check measures: the full plan on a GPU, or :data:`DRY` on the CPU at tiny sizes."""

    device: str
    sizes: dict[str, tuple[int, int]]  # name -> (height, width)
    model_networks: tuple[str, ...]
    #: network, size, precision, codec (None: the default, NVENC where it opens), preset, consistency
    e2e_rows: tuple[tuple[str, str, str, str | None, str, float], ...]
    clip_frames: int  # frames of each end-to-end clip (30 frames/s)
    short_seconds: float  # the steady-state window starts after this much of the clip
    repeats: int  # timed repetitions of each row after a warm-up (fewer when the section's time runs out)
    consistency_networks: tuple[str, ...]  # plus the shipped artifact
    consistency_frames: int
    train: tuple[int, int, int, int, tuple[str, ...]]  # size, batch, steps, warmup, variants
    temporal: tuple[bool, ...]  # training rows with the temporal loss off and/or on
    model_min: tuple[float, int]  # model only: least seconds and calls per timed repetition
    tests: tuple[str, ...]  # what pytest -m gpu collects


FULL = Plan(
    device="cuda",
    sizes={"360p": (360, 640), "1080p": (1080, 1920), "4K": (2160, 3840)},
    model_networks=("johnson", "light", "identity"),
    e2e_rows=(
        ("identity", "360p", "auto", None, "medium", 0.0),
        ("identity", "1080p", "auto", "libx264", "medium", 0.0),
        ("light", "360p", "auto", None, "medium", DEFAULT_CONSISTENCY),
        ("light", "1080p", "auto", None, "medium", DEFAULT_CONSISTENCY),
        ("light", "1080p", "auto", None, "medium", 0.0),
        ("johnson", "360p", "auto", None, "veryfast", 0.0),
        ("johnson", "360p", "auto", None, "veryfast", DEFAULT_CONSISTENCY),
        ("johnson", "1080p", "fp16", None, "medium", 0.0),
        ("johnson", "1080p", "fp16", None, "medium", DEFAULT_CONSISTENCY),
    ),
    clip_frames=180,
    short_seconds=1.0,
    repeats=3,
    consistency_networks=("light", "johnson"),
    consistency_frames=60,
    train=(256, 16, 20, 3, ("bf16", "bf16+compile")),
    temporal=(False, True),
    model_min=(0.2, 5),
    tests=("tests",),
)
DRY = Plan(
    device="cpu",
    sizes={"360p": (48, 64), "1080p": (64, 96), "4K": (96, 128)},
    model_networks=("light", "identity"),
    e2e_rows=(
        ("identity", "1080p", "auto", "libx264", "ultrafast", 0.0),
        ("light", "360p", "auto", "libx264", "ultrafast", DEFAULT_CONSISTENCY),
    ),
    clip_frames=12,
    short_seconds=0.2,
    repeats=1,
    consistency_networks=("light",),
    consistency_frames=6,
    train=(64, 2, 1, 1, ("fp32",)),
    temporal=(True,),  # the longer code path; the dry run on a shared 2-core machine must stay under 2 minutes
    model_min=(0.0, 1),
    tests=("tests/test_device_flow.py",),
)


@dataclass
class Context:
    """What every section gets: the plan, the section's budget, the report and a scratch folder."""

    plan: Plan
    budget: Budget
    report: Report
    tmp: Path
    tests_timeout: float = 150.0
    _files: dict[str, Path] = dataclasses.field(default_factory=dict)

    def artifact(self, name: str) -> Path:
        """A random-weight artifact of network ``name`` (saved once)."""
        if name not in self._files:
            from inference.model.artifact import save_artifact
            from inference.model.networks import build_network

            self._files[name] = save_artifact(self.tmp / f"{name}.safetensors", build_network(name), style_name="s",
                                              style_sha256="0" * 64, config={}, temporal=False)  # fmt: skip
        return self._files[name]

    def raft_weights(self) -> Path | None:
        """A ``raft_small`` state dict with random weights (saved once), on CUDA; None on the CPU (DIS runs there)."""
        if self.plan.device != "cuda":
            return None
        if "raft" not in self._files:
            import torch

            from inference.engine.device_flow import build_raft

            torch.manual_seed(0)
            torch.save(build_raft("raft_small").state_dict(), self.tmp / "raft_small_random.pth")
            self._files["raft"] = self.tmp / "raft_small_random.pth"
        return self._files["raft"]

    def clip(self, size: str) -> Path:
        """A textured pan of :attr:`Plan.clip_frames` frames made at ``size`` (saved once)."""
        key = f"clip-{size}"
        if key not in self._files:
            self._files[key] = make_clip(self.tmp / f"{key}.mp4", self.plan.clip_frames, self.plan.sizes[size])
        return self._files[key]


def timed(run: Callable[[], float], ctx: Context) -> dict[str, Any]:
    """One warm-up call of ``run``, then up to :attr:`Plan.repeats` timed ones while the section's time allows:
    ``{"median", "min", "max", "runs"}`` of what ``run`` returns (inside :meth:`Budget.row`)."""
    with ctx.budget.row():
        t0 = time.perf_counter()
        run()
        values: list[float] = []
        for _ in range(ctx.plan.repeats):
            if values and ctx.budget.left() < 1.5 * (time.perf_counter() - t0) / (len(values) + 1):
                break  # the next repetition would not fit: keep what was measured
            values.append(run())
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def make_clip(path: Path, frames: int = 180, size: tuple[int, int] = (1080, 1920)) -> Path:
    """A textured 1080p pan (smooth noise at several scales, 4 px right and 2 px down per frame), libx264."""
    import av
    import numpy as np
    import torch
    import torch.nn.functional as F

    h, w = size
    gen = torch.Generator().manual_seed(0)
    canvas = sum(
        F.interpolate(torch.rand(1, 3, cells, cells * 2, generator=gen), size=(h + 2 * frames, w + 4 * frames),
                      mode="bicubic", align_corners=False) * amp
        for cells, amp in ((4, 0.5), (16, 0.3), (64, 0.2), (256, 0.1))
    )  # fmt: skip
    canvas = (canvas[0].permute(1, 2, 0).clamp(0, 1) * 255).byte().numpy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for t in range(frames):
            rgb = np.ascontiguousarray(canvas[2 * t : 2 * t + h, 4 * t : 4 * t + w])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return path


def encoder_alone_fps(clip: Path, codec: str | None, preset: str, size: tuple[int, int], tmp: Path) -> float:
    """Encoding alone: the clip's I420 planes decoded (and resized) beforehand, then only encoded, with the options
    ``stylize_file`` gives the encoder (no colour conversion counted)."""
    import av

    from inference.io.encoders import resolve_encoder
    from inference.io.readers import open_source

    source = open_source(clip, size=size, even=True, planes=True)
    fmt = "yuv420p" if source.info.yuv is not None else "rgb24"  # planes whenever the stream allows
    frames = [f.array for f in source.frames()]
    source.close()

    encoder = resolve_encoder(codec, ".mp4", 18, preset, "yuv420p")
    t0 = time.perf_counter()
    with av.open(str(tmp / f"enc-{encoder.name}.mp4"), "w") as out:
        stream = out.add_stream(encoder.name, rate=30)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if encoder.x26x:
            stream.codec_context.thread_type = "FRAME"
        stream.options = dict(encoder.options)
        for planes in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format=fmt)))
        out.mux(stream.encode())
    return len(frames) / (time.perf_counter() - t0)
