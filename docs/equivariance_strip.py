"""Make ``docs/equivariance-strip.jpg``: does the texture stick to the surfaces or to the pixels?

Four consecutive frames of a camera pan, 1:1 crops (pixel-level grain stays visible), per-frame output of two
artifacts (``--before``: the original design, ``--after``: the alias-free one), each with its frame-to-frame change
(absolute difference from the previous output moved by the input's flow, amplified 4x; black = the texture moved with
the picture, speckle = it was redrawn).

    python -m docs.equivariance_strip \\
        --before docs/models/starry_night+great_wave-hed-light-original.safetensors \\
        --after docs/models/starry_night+great_wave-hed-light.safetensors
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.environment import shared_clip
from docs.consistency_strip import frame_change
from docs.side_by_side import save_rows
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.artifact import load_artifact
from styletrain.data.video_frames import read_clip

DEFAULT_CLIP = shared_clip("big_buck_bunny_pan_2s.mp4")
START, COUNT = 8, 4
CROP = (slice(100, 260), slice(300, 520))  # rows, columns of the 640x360 frame: grass, trees and sky


def main() -> None:
    """Stylize the clip with both artifacts, write the strip."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="artifact of the original design")
    p.add_argument("--after", required=True, help="artifact of the alias-free design")
    p.add_argument("--clip", default=str(DEFAULT_CLIP))
    p.add_argument("--output", default="docs/equivariance-strip.jpg")
    opts = p.parse_args()
    frames = read_clip(opts.clip, max_frames=START + COUNT, max_side=640)
    inputs = frames[START:]
    rows: list[tuple[str, list[np.ndarray]]] = [("input", [f[CROP] for f in inputs])]
    for label, path in (("original", opts.before), ("alias-free", opts.after)):
        network = load_artifact(path, device="cpu").network
        outputs = list(Stylizer(network, RuntimeOptions(device="cpu", backend="torch")).frames(frames))[START:]
        rows.append((label, [f[CROP] for f in outputs]))
        rows.append((f"{label} change x4", [f[CROP] for f in frame_change(outputs, inputs)]))
    save_rows(rows, opts.output)
    print(opts.output)


if __name__ == "__main__":
    main()
