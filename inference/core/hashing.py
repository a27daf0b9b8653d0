"""File identity: the sha256 of a file's bytes, which names an artifact's weights (the ONNX export cache key) and a
style image (recorded in artifacts)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from inference.core.errors import UserError


def sha256_of_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks.

    Raises:
        UserError: The file cannot be read (one line naming it).
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
