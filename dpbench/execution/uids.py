"""Sandbox uids: each running program gets a uid that no other process on the machine uses.

A root scorer runs every program under an unprivileged uid. Two programs must
never share one, or the kernel's per-uid process limit, signals between them and
(without namespaces) the final kill-everything-of-this-uid sweep would reach
across sandboxes (two dpbench processes once killed each other's programs that
way). So a uid is *leased*: `lease_uid` takes an exclusive ``flock`` on
``<lock dir>/uid-<N>.lock``, shared by every dpbench process and data-parallel rank
on the machine, for as long as the program runs, and skips uids that any process
is running as (real, effective, saved or file-system uid) or that name an account
in the password database. The lock dies with the process that holds it, so a
killed scorer never leaks a uid.

Lock directory: ``$DPBENCH_LOCK_DIR``, else ``/run/dpbench`` (``/var/lock/dpbench``,
``/tmp/.dpbench-<uid>`` where /run is not writable); it must be a real directory
owned by us and not writable by others (checked, never followed through a symlink).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

DEFAULT_UID = 66000  # clear of the 64000 + slot uids older dpbench versions use without leasing
DEFAULT_COUNT = 1000  # uids DEFAULT_UID .. DEFAULT_UID + count - 1


class UidsExhausted(RuntimeError):
    """Every uid of the range is leased or in use."""


def _default_lock_dir() -> Path:
    for base in ("/run", "/var/lock"):
        if os.path.isdir(base) and os.access(base, os.W_OK):
            return Path(base) / "dpbench"
    return Path(f"/tmp/.dpbench-{os.geteuid()}")  # same for every process of this user on the machine


def lock_dir() -> Path:
    """The machine-wide directory for dpbench's locks (created 0700 on first use, checked every time)."""
    path = Path(os.environ.get("DPBENCH_LOCK_DIR") or _default_lock_dir())
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create the sandbox lock directory {path} ({err}); set DPBENCH_LOCK_DIR") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OSError(f"{path} must be a directory owned by uid {os.geteuid()} and writable only by it "
                      f"(a symlink or a shared directory would let others steal or fake leases)")
    return path


def uids_in_use() -> set[int]:
    """Every uid some process on the machine runs as (from /proc)."""
    used: set[int] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Uid:"):
                        used.update(int(x) for x in line.split()[1:])
                        break
        except OSError:
            continue
    return used


def _has_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def lease_uid(base: int = DEFAULT_UID, count: int = DEFAULT_COUNT) -> Iterator[int]:
    """Hold a free uid in ``[base, base + count)`` for the duration of the ``with`` block."""
    if base <= 0 or count < 1:
        raise ValueError(f"the sandbox uid range must start above 0 and hold at least one uid, got {base} + {count}")
    directory = lock_dir()
    used = uids_in_use()
    for uid in range(base, base + count):
        if uid in used:
            continue
        fd = os.open(directory / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # Locked: no dpbench process holds it. Re-check the processes (one may have started since the scan).
        if uid in uids_in_use() or _has_account(uid):
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)  # releases the lock
        return
    raise UidsExhausted(f"no free sandbox uid in {base}..{base + count - 1}: all are leased or in use "
                        f"(set DPBENCH_SANDBOX_UID to another range)")


__all__ = ["DEFAULT_COUNT", "DEFAULT_UID", "UidsExhausted", "lease_uid", "lock_dir", "uids_in_use"]
