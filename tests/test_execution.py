"""Sanitizing completions and running untrusted code in the sandbox."""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
from pathlib import Path

import pytest

from dpbench.execution import (SandboxConfig, extract_code, free_names, isolation_mode, isolation_warning, run_program,
                               run_programs, sanitize)

IS_ROOT = os.geteuid() == 0


# -- sanitize -------------------------------------------------------------------------------
def test_extract_code_prefers_python_fence_and_handles_cutoff():
    text = "Here:\n```text\nnot code\n```\nand\n```python\ndef f():\n    return 1\n```\nDone."
    assert extract_code(text) == "def f():\n    return 1\n"
    assert extract_code("```python\ndef g():\n    return 2") == "def g():\n    return 2"  # never closed
    assert extract_code("def h(): pass") == "def h(): pass"


def test_sanitize_keeps_target_helpers_and_imports_drops_demo_code():
    completion = textwrap.dedent('''\
        Sure! Here is the solution.
        ```python
        import math
        from typing import List

        LIMIT = 10

        def helper(x):
            return math.sqrt(x) + LIMIT

        def unrelated():
            while True:
                pass

        def solve(xs: List[int]) -> float:
            return sum(helper(x) for x in xs)

        print(solve([1, 4]))
        assert solve([]) == 0
        if __name__ == "__main__":
            unrelated()
        ```
        It works because ...''')
    code = sanitize(completion, "solve")
    assert "def solve" in code and "def helper" in code and "LIMIT = 10" in code
    assert "import math" in code and "from typing import List" in code
    assert "unrelated" not in code and "print(" not in code and "assert" not in code
    ns: dict = {}
    exec(code, ns)
    assert ns["solve"]([1, 4]) == pytest.approx(1 + 10 + 2 + 10)


def test_sanitize_continues_the_prompt_and_drops_a_cut_off_line():
    prompt = 'from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    """Sum."""\n'
    code = sanitize("    return sum(xs)\n\nprint(add([1, 2]))\nx = (1 +", "add", prompt=prompt)
    ns: dict = {}
    exec(code, ns)
    assert ns["add"]([1, 2, 3]) == 6 and "print" not in code
    # A full function from an instruct model: the prompt's imports are kept, its stub is not duplicated.
    full = "```python\ndef add(xs: List[int]) -> int:\n    return sum(xs) * 2\n```"
    code = sanitize(full, "add", prompt=prompt)
    ns = {}
    exec(code, ns)
    assert ns["add"]([1, 2]) == 6 and code.startswith("from typing import List")


def test_sanitize_keeps_the_prompts_helpers_imports_and_constants():
    """HumanEval prompts define helpers the tests call (HumanEval/50's encode_shift): keep every definition."""
    prompt = ('import math\nSHIFT = 5\n\n\ndef encode_shift(s: str):\n    return "".join(chr(((ord(ch) + SHIFT - 97) % 26) + 97) '
              'for ch in s)\n\n\ndef decode_shift(s: str):\n    """Decode."""\n')
    body = '    return "".join(chr(((ord(ch) - SHIFT - 97) % 26) + 97) for ch in s)\n'
    for completion in (body, f"```python\ndef decode_shift(s: str):\n{body}```"):  # continuation, full function
        code = sanitize(completion, "decode_shift", prompt=prompt)
        ns: dict = {}
        exec(code, ns)
        assert ns["decode_shift"](ns["encode_shift"]("hello")) == "hello" and ns["math"] is math
        assert code.count("def decode_shift") == 1


def test_free_names_are_what_the_test_takes_from_the_program():
    test = "import math\nX = 2\ndef check(candidate):\n    for i in range(X):\n        assert helper(candidate(i), math.pi)\n"
    assert free_names(test, "check(f)\n") == ["f", "helper"]


# -- sandbox basics -------------------------------------------------------------------------
def test_pass_fail_and_captured_output():
    ok = run_program("print('hello')\nassert 1 + 1 == 2\n")
    assert ok.status == "passed" and ok.stdout.startswith("hello") and ok.returncode == 0
    bad = run_program("def f():\n    raise ValueError('boom')\nf()\n")
    assert bad.status == "failed" and "ValueError: boom" in bad.reason and "boom" in bad.stderr
    syntax = run_program("def f(:\n")
    assert syntax.status == "failed" and "SyntaxError" in syntax.reason


def test_program_runs_in_its_own_scratch_dir():
    res = run_program("import os\nprint(os.environ['HOME'] == os.environ['TMPDIR'])\n"
                      "open('scratch.txt', 'w').write('x')\n", SandboxConfig(guard=False))
    assert res.status == "passed" and res.stdout.strip() == "True"
    assert not Path("scratch.txt").exists()


# -- hostile programs (program mode: whole program in the sandbox) --------------------------------
UID_BASE, UID_COUNT = 72000, 16  # a range of our own: leftover checks see only these tests' processes
NAMESPACES = isolation_mode(SandboxConfig()) == "namespace"


def _hostile(canary: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (program, allowed statuses)."""
    return {
        "infinite_loop": ("while True:\n    pass\n", ("timed_out",)),
        "delete_canary": (f"import os\nos.remove({str(canary)!r})\n", ("failed",)),
        "allocate_10gb": ("x = bytearray(10 * 1024 ** 3)\nprint(len(x))\n", ("failed",)),
        "fork_loop": ("import os, time\nfor _ in range(200):\n    if os.fork() == 0:\n        time.sleep(60)\n"
                      "        os._exit(0)\n", ("failed",)),
        "sys_exit_0": ("import sys\nsys.exit(0)\n", ("failed",)),
        "print_100mb": ("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2 ** 20)\n", ("failed",)),
        "kill_parent": ("import os\nos.kill(os.getppid(), 9)\n", ("failed",)),
    }


def _sandbox_processes() -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path("/proc", pid, "status").read_text().splitlines()
            uid_line = next(line for line in status if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if any(UID_BASE <= int(u) < UID_BASE + UID_COUNT for u in uid_line.split()[1:]):
            pids.append(int(pid))
    return pids


ISOLATIONS = [
    pytest.param(dict(guard=True), id="default"),
    pytest.param(dict(guard=False), id="namespace-no-guard", marks=pytest.mark.skipif(
        not (IS_ROOT and NAMESPACES), reason=f"needs root and namespaces: {isolation_warning()}")),
    pytest.param(dict(guard=False, namespaces=False), id="uid-no-guard", marks=pytest.mark.skipif(
        not IS_ROOT, reason="without root there is no separate uid: only the guard protects the runner (documented)")),
]


@pytest.mark.parametrize("kw", ISOLATIONS)
def test_hostile_programs_fail_and_harm_nothing(kw):
    """Each hostile program is failed or timed out; the canary and this process survive.

    The no-guard variants check that the OS layer alone holds as root: the full
    sandbox (namespaces), and the uid-only one (rlimits, process group, uid sweep).
    """
    shared = Path(tempfile.mkdtemp(prefix="dpbench-canary-"))  # world-readable: only the sandbox protects it
    try:
        shared.chmod(0o755)
        canary = shared / "canary.txt"
        canary.write_text("alive")
        canary.chmod(0o644)
        cfg = SandboxConfig(timeout=2.0, uid=UID_BASE, uid_count=UID_COUNT, **kw)
        progs = _hostile(canary)
        results = run_programs([p for p, _ in progs.values()], cfg, workers=2)
        for (name, (_, allowed)), res in zip(progs.items(), results):
            assert res.status in allowed, (name, res)
        assert canary.read_text() == "alive"
        # The runner is alive (we are) and the sandbox still works afterwards.
        assert run_program("assert sum(range(4)) == 6\n", cfg).status == "passed"
        if isolation_mode(cfg) != "same-uid":
            assert _sandbox_processes() == []  # forks and loops were killed
        # What the program sees of a world-readable host file: nothing in the full sandbox, the file without it.
        readable = run_program(f"assert open({str(canary)!r}).read() == 'alive'\n", cfg)
        assert readable.status == ("failed" if isolation_mode(cfg) == "namespace" else "passed"), readable
    finally:
        canary.unlink(missing_ok=True)
        shared.rmdir()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run the program under a separate uid")
def test_separate_uid_protects_private_files_and_the_runner(tmp_path):
    """Without namespaces (where the file is visible at all), the uid is what protects the runner."""
    private = tmp_path / "records.jsonl"  # tmp_path lives under a 0700 directory
    private.write_text("{}\n")
    prog = textwrap.dedent(f"""\
        import os, posix
        for attempt in (lambda: posix.unlink({str(private)!r}), lambda: open({str(private)!r}, 'a'),
                        lambda: posix.kill(os.getppid(), 9)):
            try:
                attempt()
            except PermissionError:
                continue
            raise SystemExit('allowed')
        """)
    res = run_program(prog, SandboxConfig(guard=False, namespaces=False, uid=UID_BASE, uid_count=UID_COUNT))
    assert res.status == "passed", res  # every attempt was refused by the kernel
    assert private.read_text() == "{}\n"


@pytest.mark.skipif(not (IS_ROOT and NAMESPACES), reason=f"needs root and namespaces: {isolation_warning()}")
def test_namespace_sandbox_view():
    """What a program sees: its own PID namespace, no network, private /tmp, read-only system, no privileges."""
    prog = textwrap.dedent("""\
        import os, socket, sys
        assert os.getpid() == 2 and os.getuid() != 0 and os.getgroups() == []
        assert sorted(p for p in os.listdir("/proc") if p.isdigit()) == ["1", "2"]  # init and us
        # /tmp is empty but for the way to the interpreter's environment when that lives under /tmp
        env = {p.split("/")[2] for p in (sys.executable, sys.prefix, os.path.realpath(sys.executable))
               if p.startswith("/tmp/")}
        assert set(os.listdir("/tmp")) == env and os.listdir("/dev/shm") == []
        assert sorted(os.listdir("/dev")) == ["fd", "full", "null", "random", "shm", "urandom", "zero"]
        assert [n for n in socket.if_nameindex() if n[1] != "lo"] == []  # no interface but a loopback that is down
        for path in ("/usr/x", "/etc/x", "/x"):
            try:
                open(path, "w")
                raise SystemExit(f"wrote {path}")
            except OSError:
                pass
        assert "NoNewPrivs:\t1" in open("/proc/self/status").read()
        """)
    res = run_program(prog, SandboxConfig(guard=False))
    assert res.status == "passed", res


# -- the plain-data codec (the judge's only contact with the program's values) --------------------------
def test_wire_round_trips_plain_data_exactly():
    from dpbench.execution import wire

    values = [None, True, False, 0, -7, 2**53, -(2**80), 10**5000, 1.5, -0.0, float("inf"), float("-inf"), 1e-300,
              "", "héllo\udc80", b"\x00\xff", bytearray(b"ab"), 3 + 4j, [1, [2, (3,)]], (1, "a"), (), {1: "x", (2, 3): [4]},
              {1, "a", (2,)}, frozenset({1}), set(), {"k": {"n": None}}]
    for v in values:
        back = wire.decode(wire.loads(wire.dumps(wire.encode(v))[4:]))
        assert back == v and type(back) is type(v), (v, back)
        if isinstance(v, (list, tuple)):
            assert [type(x) for x in back] == [type(x) for x in v]
    nan = wire.decode(wire.loads(wire.dumps(wire.encode(float("nan")))[4:]))
    assert nan != nan


def test_wire_refuses_what_is_not_plain_data():
    from dpbench.execution import wire

    class Eq:
        def __eq__(self, other):
            return True

    for bad in (Eq(), object(), len, iter([1]), (x for x in []), type):
        with pytest.raises(wire.NotPlain):
            wire.encode(bad)
    class Sub(int):
        def __eq__(self, other):
            return True
    assert type(wire.encode(Sub(3))) is int  # a subclass travels as its value, never its behaviour
    cyc: list = []
    cyc.append(cyc)
    with pytest.raises(wire.NotPlain):
        wire.encode(cyc)
    for raw in ('{"tuple": 1}', '{"a": 1, "b": 2}', '{"set": [[1]]}', '{"dict": [[[1], 2]]}', '{"float": "1e999"}',
                '{"int": "zz"}', '{"bytes": "x"}', '{"complex": [1, 2]}', '{"object": []}', "NaN", "[" * 5000 + "]" * 5000):
        with pytest.raises(wire.WireError):
            wire.decode(wire.loads(raw.encode()))
    reader = wire.FrameReader(max_bytes=10)
    reader.feed((11).to_bytes(4, "big"))
    with pytest.raises(wire.WireError):
        reader.next()
