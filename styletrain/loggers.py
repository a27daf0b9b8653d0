"""Weights & Biases set-up: online when an API key is configured, offline otherwise, never a login prompt.

``wandb.init`` asks for an API key interactively when none is configured, which would make an unattended training
run hang. :func:`configure_wandb_mode` looks for a key the way wandb does (``WANDB_API_KEY``, then the ``.netrc``
entry of the W&B host) without importing wandb (which takes seconds) and without contacting any server, and sets
``WANDB_MODE=offline`` when there is none. An offline run is stored under the logger's ``save_dir`` and can be
uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

_DEFAULT_HOST = "https://api.wandb.ai"


def _netrc_paths(environ: dict[str, str]) -> list[Path]:
    """The ``.netrc`` files wandb reads, in its order of preference."""
    if environ.get("NETRC"):
        return [Path(environ["NETRC"]).expanduser()]
    home = Path.home()
    return [home / ".netrc", home / "_netrc"]


def wandb_api_key_configured(environ: dict[str, str] | None = None) -> bool:
    """Whether a W&B API key is available without prompting.

    Args:
        environ: Environment to inspect (``os.environ`` by default).

    Returns:
        True when ``WANDB_API_KEY`` (or an identity-token file) is set, or the ``.netrc`` file has an entry for the
        W&B host (``WANDB_BASE_URL``, ``api.wandb.ai`` by default).
    """
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL", _DEFAULT_HOST)).hostname or "api.wandb.ai"
    for path in _netrc_paths(environ):
        try:
            if path.is_file() and netrc.netrc(str(path)).authenticators(host):
                return True
        except (netrc.NetrcParseError, OSError):
            # A broken .netrc means wandb cannot use it either: treat it as "no key", never crash on it.
            continue
    return False


def configure_wandb_mode(environ: dict[str, str] | None = None) -> str:
    """Set ``WANDB_MODE=offline`` when no API key is configured and the user did not choose a mode.

    Args:
        environ: Environment to read and update (``os.environ`` by default).

    Returns:
        The resulting mode: the user's ``WANDB_MODE`` if set, else ``"online"`` or ``"offline"``.
    """
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if wandb_api_key_configured(environ):
        return "online"
    environ["WANDB_MODE"] = "offline"
    log.info("No W&B API key configured: logging offline (upload later with `wandb sync`).")
    return "offline"


def is_wandb_logger(logger: object) -> bool:
    """Whether ``logger`` is Lightning's ``WandbLogger`` (checked without importing wandb)."""
    return type(logger).__name__ == "WandbLogger" or any(c.__name__ == "WandbLogger" for c in type(logger).__mro__)
