"""Make ``docs/stroke-scale.jpg``: a shipped sample photo stylized at stroke scales 1, 2, 2 with guided detail, and 4.

With ``--model`` the panels come from that trained artifact (its first style); without it from the ``johnson``
architecture with fixed random weights, whose texture also has a fixed size in pixels, like the strokes of a trained
network. Prints the high-frequency luminance energy (mean squared Laplacian) of every panel.

    python -m docs.stroke_scale_figure --model docs/models/starry_night+great_wave-hed-light.safetensors
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from docs.side_by_side import figure_options, save_side_by_side
from inference.engine.options import RuntimeOptions
from inference.engine.strokes import luminance
from inference.engine.stylizer import Stylizer
from inference.model.networks import build_network

PANELS = (("--stroke-scale 1", 1.0, "none"), ("2", 2.0, "none"), ("2, guided", 2.0, "guided"), ("4", 4.0, "none"))
TILE_WIDTH = 240  # five 1:1 crops side by side: 1200 px


def laplacian_energy(rgb: np.ndarray) -> float:
    """Mean squared Laplacian of the luminance of ``uint8 [H, W, 3]``."""
    y = luminance(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(y, kernel).pow(2).mean().item()


def main() -> None:
    """Stylize, print the energies, write the picture."""
    opts, img = figure_options(__doc__.splitlines()[0], "docs/stroke-scale.jpg")
    panels = [("original", img)]
    for label, scale, detail in PANELS:
        options = RuntimeOptions(device="cpu", backend="torch", stroke_scale=scale, stroke_detail=detail)
        if opts.model:
            stylizer = Stylizer.from_artifact(opts.model, options)
        else:
            torch.manual_seed(opts.seed)  # the same weights in every panel
            stylizer = Stylizer(build_network("johnson"), options)
        stylizer.update(style=stylizer.style_names[0])
        panels.append((label, stylizer.image(img)))
    for label, rgb in panels:
        print(f"{label:18s} laplacian energy {laplacian_energy(rgb):.5f}")
    save_side_by_side(panels, opts.output, TILE_WIDTH)


if __name__ == "__main__":
    main()
