"""Content images from a folder (``--data.path``): every image file below it, recursively, in a stable order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from inference.core.errors import OptionError, UserError
from inference.io.media import IMAGE_EXTENSIONS
from styletrain.data.content_sources import load_rgb


def list_image_files(root: str | Path) -> tuple[list[Path], int]:
    """All image files under ``root`` (recursive, symlinks followed once), sorted by relative path.

    Returns:
        ``(files, ignored)`` where ``ignored`` counts files without an image extension (and hidden files).

    Raises:
        UserError: ``root`` is missing or not a folder.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data folder not found: {root}")
    if not root.is_dir():
        raise OptionError("path", f"must be a folder of images, got a file: {root}")
    files: list[Path] = []
    ignored = 0
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
            else:
                ignored += 1
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files, ignored


class FolderSource:
    """Image files under a folder (``--data.path``)."""

    def __init__(self, root: str | Path, max_images: int | None = None) -> None:
        self.root = Path(root).expanduser()
        self.files, self.ignored = list_image_files(self.root)
        if not self.files:
            raise UserError(
                f"no images in {self.root} (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
                f"{self.ignored} other files ignored)"
            )
        self.files = self.files[:max_images]
        self.name = f"folder {self.root}"

    def __len__(self) -> int:
        return len(self.files)

    def key(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def load(self, index: int, min_side: int | None = None) -> np.ndarray:
        return load_rgb(self.files[index], min_side=min_side)
