"""User-facing errors.

Every problem caused by the user's input (a missing file, a corrupt artifact, an
unsupported extension, ...) is raised as a :class:`UserError` whose message is one
line naming the file and the problem. The command-line entry points catch it and
print ``error: <message>`` to stderr with a non-zero exit status, so users never see
a traceback from deep inside a library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input, reported as a single line without a traceback."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the underlying library said.
        super().__init__(" ".join(str(message).split()))


class ArtifactError(UserError):
    """An artifact file is missing, truncated, foreign or inconsistent."""


class MediaError(UserError):
    """A video, image or frame folder cannot be read or written."""


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a CLI ``main`` so that a :class:`UserError` becomes ``error: ...`` and exit status 2.

    Ctrl-C exits with status 130 and a short message, never a traceback.
    """

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
