"""Make ``docs/consistency-strip.jpg``: four consecutive frames of a real clip, per-frame output vs the consistency
stage (``--consistency 0.8``), each with its frame-to-frame change (absolute difference from the previous output moved
by the input's flow, amplified 4x; black = steady). The flicker shows as speckle in the per-frame change row.

The artifact is given with ``--model`` (bench/consistency.py's, see docs/consistency.md for how it was made), with
``--input-noise`` fed through bench/consistency.py's ``InputNoise`` as in the bench's quality figures; the clip is a
real video (``--clip``, default the Big Buck Bunny pan from the data root, see ``bench/environment.py``), read at
640x360. Run it as a module from the repository root:

    python -m docs.consistency_strip --model artifacts/light.safetensors --input-noise 0.02
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from bench.environment import shared_clip
from docs.side_by_side import save_rows
from inference.engine.flow import flow_tensor, warp
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.artifact import load_artifact
from styletrain.data.video_frames import read_clip
from styletrain.temporal.flow import estimate_flow

TILE = (256, 144)  # each frame shrunk to this size
START, COUNT = 8, 4


def frame_change(frames: list[np.ndarray], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """``|out_t - warp(out_{t-1})|`` amplified 4x, the previous output moved by the input's flow (Farnebäck, full
    size: the bench's trustworthy ruler; DIS invents motion in the flat sky, which showed as change there), so that
    motion itself does not show, only flicker (the first frame has no previous one: black)."""
    out = [np.zeros_like(frames[0])]
    for t in range(1, len(frames)):
        back = flow_tensor(estimate_flow(inputs[t], inputs[t - 1], "farneback"))
        prev = torch.from_numpy(frames[t - 1]).permute(2, 0, 1)[None].float()
        moved = warp(prev, back, padding_mode="border")[0].permute(1, 2, 0).numpy()
        out.append(np.clip(np.abs(frames[t].astype(np.float32) - moved) * 4, 0, 255).astype(np.uint8))
    return out


def main() -> None:
    """Stylize both ways, write the strip."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--clip", default=str(shared_clip("big_buck_bunny_pan_2s.mp4")))
    p.add_argument("--output", default="docs/consistency-strip.jpg")
    p.add_argument("--input-noise", type=float, default=0.0, help="sigma of bench/consistency.py's InputNoise")
    opts = p.parse_args()
    frames = read_clip(opts.clip, max_frames=START + COUNT, max_side=640)
    network = load_artifact(opts.model, device="cpu").network
    if opts.input_noise > 0:
        from bench.consistency import InputNoise  # the bench's flickering wrapper

        network = InputNoise(network, opts.input_noise)
    options = RuntimeOptions(device="cpu", backend="torch")
    per_frame = list(Stylizer(network, options).frames(frames))[START:]
    consistent = list(Stylizer(network, replace(options, consistency=0.8)).frames(frames))[START:]
    rows = [
        ("input", frames[START:]),
        ("per-frame", per_frame),
        ("per-frame change x4", frame_change(per_frame, frames[START:])),
        ("--consistency 0.8", consistent),
        ("consistent change x4", frame_change(consistent, frames[START:])),
    ]
    save_rows(rows, opts.output, resize=TILE)
    print(opts.output)


if __name__ == "__main__":
    main()
