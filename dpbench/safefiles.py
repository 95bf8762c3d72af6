"""Files of a run directory that no one else can lose, redirect or block.

- `run_lock`: one writer per run directory (an ``flock`` that dies with its process);
- `open_append`: records are appended with ``O_NOFOLLOW``, and only to a regular file;
- `read_regular`: a FIFO, device or socket where a file should be is refused, never read.

`dpbench.records` re-exports all of them; this module only keeps that one short.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

LOCK = ".dpbench.lock"  # flock'ed by the one process writing into a run directory


class RunLocked(InputError):
    """Another dpbench process is writing into this run directory."""


@contextmanager
def run_lock(out: str | Path) -> Iterator[Path]:
    """Hold ``out``'s lock (creating the directory) or raise `RunLocked` naming the holder's pid.

    An ``flock`` on ``out/.dpbench.lock``: it dies with its process, so a killed run
    never leaves the directory locked. The lock file is never followed through a link.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise InputError(f"cannot lock run directory {out}: {err.strerror} ({out / LOCK})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunLocked(f"{out} is in use by another dpbench process (pid {holder}); wait for it to "
                            f"finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield out
    finally:
        os.close(fd)


def open_append(path: str | Path):
    """``path`` opened for appending records, refusing to write through a symlink or into a FIFO."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise InputError(f"cannot append to {path}: {err.strerror} (a link or special file there is never followed)") from None
    if not is_regular(fd):
        os.close(fd)
        raise InputError(f"cannot append to {path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


def is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def read_regular(path: Path, error: type[Exception] = InputError) -> bytes:
    """The bytes of a regular file; a FIFO, device or socket there is refused, never read (it could block or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not is_regular(fd):
            raise error(f"{path} is not a regular file; refusing to read it")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


__all__ = ["LOCK", "RunLocked", "is_regular", "open_append", "read_regular", "run_lock"]
