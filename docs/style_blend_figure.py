"""Make ``docs/style-blend.jpg``: one two-style network, each style alone and blends between them.

A blend interpolates each style's normalisation scales and shifts (conditional instance norm). With ``--model`` (a
trained two-style artifact) the panels are its two paintings and the blends between them; without it the network is
``johnson`` with fixed random convolutions and two random sets of per-style scales and shifts, which shows only the
mechanism (one network, a continuous path from style 0 to style 1 at the speed of one style).

    python -m docs.style_blend_figure --model docs/models/starry_night+great_wave-hed-light.safetensors

That artifact (the documentation's pictures) was trained on this project's 2-core CPU with the HED-VGG16 loss net
(``python -m bench.build_hed_vgg16``) on the 20 photos of the shared data folder, in about an hour::

    styletrain fit --config configs/smoke.yaml --style data/samples/starry_night.jpg --style great_wave.jpg \
        --data.path photos/ --data.image_size 128 --data.batch_size 4 --data.val_size 2 --model.network light \
        --model.vgg_weights artifacts/hed_vgg16.pth --model.style_size 256 \
        --model.loss.style_layers "[relu1_2, relu2_2, relu3_3, relu4_3]" --model.loss.style_balance 1.0 \
        --model.optimizer.lr 0.003 --trainer.max_steps 400 --trainer.val_check_interval 200 \
        --artifact.path docs/models/starry_night+great_wave-hed-light.safetensors

The shipped artifact has the alias-free design (the default since artifact format 3). The same command with the
original design (``--model.network_kwargs '{alias_free: false}'``; trained before the design existed) made
``docs/models/starry_night+great_wave-hed-light-original.safetensors``, the "before" of ``docs/equivariance.md``.
"""

from __future__ import annotations

import torch

from docs.side_by_side import figure_options, save_side_by_side
from inference.engine.options import RuntimeOptions
from inference.engine.stylizer import Stylizer
from inference.model.layers import ConditionalInstanceNorm2d
from inference.model.networks import build_network

BLENDS = (1.0, 0.75, 0.5, 0.25, 0.0)  # weight of style 0; style 1 gets the rest
TILE_WIDTH = 240  # six 1:1 crops side by side: 1440 px


@torch.no_grad()
def two_style_network(seed: int) -> torch.nn.Module:
    """``johnson`` with 2 styles whose per-style norm scales and shifts differ (random, fixed by ``seed``)."""
    torch.manual_seed(seed)
    net = build_network("johnson", num_styles=2)
    for module in net.modules():
        if isinstance(module, ConditionalInstanceNorm2d):
            module.weight.copy_(1.0 + 0.6 * torch.randn_like(module.weight))
            module.bias.copy_(0.4 * torch.randn_like(module.bias))
    return net


def main() -> None:
    """Stylize the photo with each blend and write the picture."""
    opts, img = figure_options(__doc__.splitlines()[0], "docs/style-blend.jpg")
    options = RuntimeOptions(device="cpu", backend="torch")
    if opts.model:
        stylizer = Stylizer.from_artifact(opts.model, options)
    else:
        stylizer = Stylizer(two_style_network(opts.seed), options)
    first, second = stylizer.style_names[:2]
    panels = [("original", img)]
    for w in BLENDS:
        stylizer.update(style={first: w, second: 1.0 - w})
        label = first if w == 1.0 else second if w == 0.0 else f"{first} {w:g}"
        panels.append((label, stylizer.image(img)))
    save_side_by_side(panels, opts.output, TILE_WIDTH)
    print(f"wrote {opts.output}")


if __name__ == "__main__":
    main()
