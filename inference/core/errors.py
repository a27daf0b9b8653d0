"""User-facing errors.

Every problem caused by the user's input (a missing file, a corrupt artifact, an
unsupported extension, ...) is raised as a :class:`UserError` whose message is one
line naming the file and the problem. The command-line entry points catch it and
print ``error: <message>`` to stderr with a non-zero exit status, so users never see
a traceback from deep inside a library.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


#: Longest message a client or a log line gets, in characters: a message can quote a field's value, and a 100 KB
#: style string must not come back whole (a server's echo would amplify every bad request).
MAX_MESSAGE_CHARS = 300


def one_line(message: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` as one line (runs of whitespace, newlines included, become one space) of at most ``limit``
    characters: a longer one loses its middle to an ellipsis, since a long quoted value sits in the middle and both the
    subject (the start) and the way out (the end: "available: ...") matter."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head) :]


class UserError(Exception):
    """A problem with the user's input, reported as a single line without a traceback.

    Args:
        message: What is wrong, naming the file or the value.
        mentions: Option fields the message names, each written in backticks there (``"use `max_side`"``): a library
            names its fields; a command line writes them as its flags (:meth:`with_flags`).
    """

    exit_code = 2

    def __init__(self, message: str, *, mentions: tuple[str, ...] = ()) -> None:
        # Keep the message on one line whatever the underlying library said.
        super().__init__(" ".join(str(message).split()))
        self.mentions = tuple(mentions)

    def with_flags(self, flag_of: Callable[[str], str]) -> str:
        """The message with every mentioned field written as ``flag_of(name)``, e.g. ``"--max-side"``."""
        return _flags_in(str(self), self.mentions, flag_of)


def _flags_in(text: str, mentions: tuple[str, ...], flag_of: Callable[[str], str]) -> str:
    for name in mentions:
        text = text.replace(f"`{name}`", flag_of(name))
    return text


class ArtifactError(UserError):
    """An artifact file is missing, truncated, foreign or inconsistent."""


class MediaError(UserError):
    """A video, image or frame folder cannot be read or written."""


class OptionError(UserError):
    """A bad value of a named option. The message names the library's field (``start``); a command-line entry point
    names its own flag instead (:meth:`with_flags`), so that only the CLI knows its flags.

    Args:
        field: The keyword argument or dataclass field, e.g. ``"start"`` or ``"gif_fps"``.
        problem: What is wrong, e.g. ``"must be in [0, 86400] seconds, got -1"``, or ``": unknown style 'x'"``
            (written right after the field).
        mentions: Other fields that ``problem`` names, each written in backticks there, e.g. ``("temporal_weight",)``
            for ``"cannot be combined with `temporal_weight`"``; :meth:`with_flags` writes them as flags too.
    """

    def __init__(self, field: str, problem: str, *, mentions: tuple[str, ...] = ()) -> None:
        self.field, self.problem = field, problem
        super().__init__(_joined(field, problem), mentions=mentions)

    def __reduce__(self):  # rebuilt from field and problem (a worker process may send it back)
        return (type(self), (self.field, self.problem), self.__dict__)

    def with_flags(self, flag_of: Callable[[str], str]) -> str:
        """The message with the field and every mentioned field written as ``flag_of(name)``, e.g.
        ``"--model.temporal_weight"``."""
        return " ".join(_joined(flag_of(self.field), _flags_in(self.problem, self.mentions, flag_of)).split())


def _joined(name: str, problem: str) -> str:
    """``"style: unknown style 'x'"`` or ``"crf must be in [0, 51]"``: a problem that starts with a colon follows the
    name directly."""
    return f"{name}{'' if problem.startswith(':') else ' '}{problem}"


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an exception (see :func:`terminate_on_sigterm`).

    A subclass of :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` / ``except BaseException``
    cleanup (temporary outputs, pipeline threads, worker processes) runs exactly as it does for Ctrl-C.
    """

    exit_code = 128 + signal.SIGTERM


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread instead of killing the process.

    A plain ``kill`` then removes temporary outputs like Ctrl-C does. Later SIGTERMs are ignored while the cleanup
    runs (a second one would interrupt it and leave the temporary file behind); the previous handler is restored on
    exit. Outside the main thread (where Python cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_on_user_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a CLI ``main`` so that a :class:`UserError` becomes ``error: ...`` and exit status 2.

    Ctrl-C exits with status 130 and SIGTERM (when :func:`terminate_on_sigterm` turned it into :class:`Terminated`)
    with 143, each with a short message, never a traceback.
    """

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except Terminated:
            print("error: terminated", file=sys.stderr)
            raise SystemExit(Terminated.exit_code) from None
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
