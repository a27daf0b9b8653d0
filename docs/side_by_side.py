"""Labelled side-by-side crops for the docs' pictures (used by the ``*_figure.py`` scripts beside this file)."""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw


def save_side_by_side(panels: list[tuple[str, np.ndarray]], path: str, tile_width: int = 240) -> None:
    """Write 1:1 centre crops of ``uint8 [H, W, 3]`` images, ``tile_width`` wide each, labelled above, as one image.

    Args:
        panels: ``(label, image)`` pairs, all of the same size, left to right.
        path: The output file (JPEG quality 90 for ``.jpg``).
        tile_width: Width of each crop in pixels.
    """
    height, width = panels[0][1].shape[:2]
    x0 = max(0, (width - tile_width) // 2)
    canvas = Image.new("RGB", (tile_width * len(panels), height + 20), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, rgb) in enumerate(panels):
        canvas.paste(Image.fromarray(rgb[:, x0 : x0 + tile_width]), (i * tile_width, 20))
        draw.text((i * tile_width + 6, 4), label, fill="black")
    canvas.save(path, quality=90)


def save_rows(
    rows: list[tuple[str, list[np.ndarray]]],
    path: str,
    resize: tuple[int, int] | None = None,
    label_width: int = 150,
) -> None:
    """Write labelled rows of ``uint8 [H, W, 3]`` images (all of one size) as one image, a label left of each row.

    Args:
        rows: ``(label, images)`` per row, top to bottom; images left to right.
        path: The output file (JPEG quality 88 for ``.jpg``).
        resize: ``(width, height)`` each image is shrunk to, or None for 1:1 (pixel-level detail stays visible).
        label_width: Width of the label column in pixels.
    """
    height, width = rows[0][1][0].shape[:2]
    tile_w, tile_h = resize or (width, height)
    columns = max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (label_width + tile_w * columns, tile_h * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        draw.text((6, r * tile_h + tile_h // 2 - 6), label, fill="black")
        for c, image in enumerate(images):
            tile = Image.fromarray(image)
            if resize is not None:
                tile = tile.resize(resize, Image.BILINEAR)
            canvas.paste(tile, (label_width + c * tile_w, r * tile_h))
    canvas.save(path, quality=88)


def figure_options(description: str, output: str) -> tuple[argparse.Namespace, np.ndarray]:
    """A figure script's --image, --output, --seed and --model, and the uint8 [H, W, 3] image.

    ``--model`` is a trained artifact (``.safetensors``); without it the scripts use fixed random weights, which show
    the mechanism but not a painting."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--image", default="data/samples/content/kodim23_parrots.jpg")
    p.add_argument("--output", default=output)
    p.add_argument("--seed", type=int, default=0, help="the random weights' seed (without --model)")
    p.add_argument("--model", default=None, help="a trained artifact to draw with instead of random weights")
    opts = p.parse_args()
    return opts, np.asarray(Image.open(opts.image).convert("RGB"))
