"""Write outputs atomically: a temporary file (or folder) next to the destination, renamed into place when complete.

An error, Ctrl-C or a kill therefore never leaves a partial file at the destination, and a failed run removes its
temporary file. A kill or a native crash leaves only a hidden ``.<name>.tmp-<pid>-<host>~*`` next to it, never a
half-written output; the next write of the same output removes such files when their process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inference.core.errors import MediaError, UserError


def check_destination(dst: str | os.PathLike, *, overwrite: bool, is_dir: bool) -> Path:
    """Validate an output path before any work is done.

    Args:
        dst: The output file or folder.
        overwrite: Whether an existing output may be replaced.
        is_dir: Whether the output is a folder of frames.

    Returns:
        The destination as a :class:`Path`.

    Raises:
        MediaError: The output exists (without ``overwrite``), its folder is missing or not writable, or an existing
            folder output holds files this tool did not write.
    """
    if not os.fspath(dst).strip():
        raise MediaError(f"the output path {os.fspath(dst)!r} is empty")  # Path("") would be ".", the current folder.
    dst = Path(dst)
    parent = dst.absolute().parent
    if not parent.is_dir():
        raise MediaError(f"{dst}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MediaError(f"{dst}: output folder {parent} is not writable")
    if dst.exists() or dst.is_symlink():
        if is_dir != dst.is_dir():
            kind = "a folder" if dst.is_dir() else "a file"
            raise MediaError(f"{dst}: already exists and is {kind}")
        if is_dir and not any(dst.iterdir()):
            return dst  # An empty folder is as good as no folder.
        if not overwrite:
            raise MediaError(f"{dst}: already exists (use `overwrite` to replace it)", mentions=("overwrite",))
        if is_dir and any(not p.name.startswith("frame_") for p in dst.iterdir()):
            # Never delete a user's unrelated files just because they named the wrong folder.
            raise MediaError(f"{dst}: folder holds files other than frame_*; refusing to replace it")
    return dst


@contextmanager
def atomic_output(dst: str | os.PathLike, *, is_dir: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``dst``'s folder; on success rename it to ``dst``, on any error delete it.

    Args:
        dst: The final output path (already checked with :func:`check_destination`).
        is_dir: Create a temporary folder instead of a file path.
        suffix: Suffix of the temporary file (muxers choose the container from it, so keep the extension).

    Yields:
        The temporary path. For files it does not exist yet; the caller creates it.
    """
    dst = Path(dst)
    parent = dst.absolute().parent
    remove_stale_temporaries(dst)
    prefix = f".{dst.name}.tmp-{os.getpid()}-{_host()}~"
    try:
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise MediaError(f"{dst}: cannot write to {parent} ({exc.strerror})") from None
    try:
        yield tmp
        if is_dir:
            _replace_dir(tmp, dst)
        else:
            # mkstemp (and some writers, e.g. safetensors) create 0600 files; give the output the usual permissions.
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, dst)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, UserError) and str(tmp) in str(exc):
            # Writers only know the temporary name; the user knows the output's.
            raise type(exc)(str(exc).replace(str(tmp), str(dst))) from None
        raise


def _host() -> str:
    """This machine's name as it appears in temporary names (letters, digits and dashes only)."""
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32]


_TEMPORARY = re.compile(r"\..+\.tmp-(\d+)-([A-Za-z0-9-]*)~")


def remove_stale_temporaries(dst: str | os.PathLike) -> list[Path]:
    """Delete the temporary outputs in ``dst``'s folder left by processes of this machine that no longer exist.

    A killed or crashed writer cannot clean up after itself; the next write into the folder does. A temporary name
    carries its writer's pid and host, so a live writer (here or on another machine sharing the folder) is never
    touched, and files this module did not name are never matched. Returns the paths removed.
    """
    parent = Path(dst).absolute().parent
    if not parent.is_dir():
        return []
    removed = []
    for path in parent.iterdir():
        match = _TEMPORARY.match(path.name)
        if match is None or match[2] != _host() or _alive(int(match[1])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # Another user's process, or a number no pid can be: leave the file alone.
    return True


def _umask() -> int:
    """The process umask (reading it requires setting it; restore it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_dir(tmp: Path, dst: Path) -> None:
    """Move folder ``tmp`` to ``dst``, replacing an existing ``dst`` (already vetted) with the shortest gap possible."""
    if not dst.exists():
        os.replace(tmp, dst)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.absolute().parent))
    os.replace(dst, old / dst.name)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)
