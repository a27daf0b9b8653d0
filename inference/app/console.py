"""Messages for people at a terminal: usage mistakes as one ``error: ...`` line, and the runtime's warnings as
``warning: ...`` lines on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from inference.app.argtypes import flag
from inference.core.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage mistakes are :class:`~inference.core.errors.UserError`: under
    :func:`~inference.core.errors.exit_on_user_error` they print as one ``error: ... (see PROG --help)`` line with
    exit status 2, like every other input error (argparse's own prints the whole usage block first). Every command
    line of the project uses it: ``stylize-video``, ``stylize-serve``, ``styletrain export`` and ``evaluate``."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and callers may replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _FlagFormatter(logging.Formatter):
    """``warning: <message>``, with the fields a library message mentions (``extra={"mentions": ("gif_fps",)}``,
    each written in backticks) as stylize-video's flags: the library names fields, the command line its flags."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for name in getattr(record, "mentions", ()):  # only records logged with extra=... carry it
            text = text.replace(f"`{name}`", flag(name))
        return text


def setup_logging(quiet: bool) -> None:
    """Print the ``inference`` loggers' warnings (errors only when ``quiet``) as ``warning: <message>`` on stderr.

    Idempotent: calling it again only changes the level. Worker processes call it too, since a spawned process
    starts with no logging configuration.
    """
    logger = logging.getLogger("inference")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_FlagFormatter("warning: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)
    logger.propagate = False
