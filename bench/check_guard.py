"""What keeps ``python -m bench.gpu_check`` returning what it measured inside a short device window: a report written
after every row, a wall-clock budget enforced inside rows, sections that cannot take the others down, and child
processes killed as a whole group.

The device machine gives one command at most 600 s and returns only what is under ``$OUT`` when it ends; a check
that writes its JSON at the end, lets a ``SystemExit`` escape, or waits on a hung child returns nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class RowTimeout(BaseException):
    """A row ran past its section's deadline (a BaseException, so that the library's ``except Exception`` handlers
    that turn errors into messages let it through)."""


class Budget:
    """Wall-clock accounting: a section may run until its deadline; :meth:`left` is what remains of it."""

    def __init__(self, seconds: float) -> None:
        self.start, self.total, self.deadline = time.monotonic(), float(seconds), time.monotonic()

    def open(self, share: float) -> None:
        """Start a section with ``share`` of the total plus what the previous sections left unused."""
        remaining_total = self.total - (time.monotonic() - self.start)
        self.deadline = time.monotonic() + max(0.0, min(remaining_total, self.total * share + self.carry()))

    def carry(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @contextmanager
    def row(self) -> Iterator[None]:
        """Run the body until the section's deadline at most: past it, :class:`RowTimeout` is raised in the main
        thread (``SIGALRM``; Python code sees it at its next bytecode, a CUDA kernel or a compile step when it returns
        to Python). Elsewhere than the main thread, or without ``SIGALRM``, the body runs unguarded."""
        left = self.left()
        if left <= 0:
            raise RowTimeout("no time left in this section")
        armed = hasattr(signal, "setitimer") and _in_main_thread()
        if not armed:
            yield
            return

        def expired(_signum, _frame) -> None:
            raise RowTimeout(f"stopped at the section's deadline ({left:.0f}s)")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Report(dict):
    """The check's results, written to ``path`` (atomically, as JSON) whenever :meth:`save` is called: after every
    row, so a command stopped from outside still leaves every finished row behind."""

    def __init__(self, path: Path, **initial: Any) -> None:
        super().__init__(initial)
        self.path = path

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)

    def add(self, key: str, row: dict[str, Any]) -> dict[str, Any]:
        """Append ``row`` to the list under ``key`` and save."""
        self.setdefault(key, []).append(row)
        self.save()
        return row


def guarded(name: str, section: Callable[[], None], report: Report) -> None:
    """Run one section; any failure but Ctrl-C, ``SystemExit`` from a ``UserError`` and a :class:`RowTimeout`
    included, is recorded under ``report["errors"][name]`` and the check goes on with the next section."""
    t0 = time.perf_counter()
    try:
        section()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - one failed section must not lose the others' figures
        report["errors"][name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    finally:
        report.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        report.save()


def run_group(cmd: list[str], cwd: Path, timeout: float, log: Path) -> tuple[int | str, str]:
    """Run ``cmd`` in a new process group with its output in ``log``; when ``timeout`` passes, the whole group
    (pytest and every child it started) is killed. Returns ``(exit status or "timeout", output)``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | str = proc.wait(timeout=max(1.0, timeout))
        except BaseException as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            code = "timeout"
        else:
            try:  # children the leader left behind (a hung encoder, a worker) go with it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return code, log.read_text(errors="replace")
