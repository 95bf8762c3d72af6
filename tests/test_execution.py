"""Sanitizing completions and running untrusted code in the sandbox."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

from dpbench.execution import SandboxConfig, extract_code, isolation_mode, run_program, sanitize

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


# -- hostile programs ---------------------------------------------------------------------------
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


def _sandbox_processes(uid: int) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path("/proc", pid, "status").read_text().splitlines()
            uid_line = next(line for line in status if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid_line.split()[1] == str(uid):
            pids.append(int(pid))
    return pids


@pytest.mark.parametrize("guard", [True, pytest.param(False, marks=pytest.mark.skipif(
    not IS_ROOT, reason="without root there is no separate uid: only the guard protects the runner (documented)"))])
def test_hostile_programs_fail_and_harm_nothing(guard, tmp_path):
    """Each hostile program is failed or timed out; the canary and this process survive.

    guard=True is the default configuration; guard=False checks that the OS
    layer alone (separate uid, rlimits, process group, sweep) holds as root.
    """
    # A world-readable directory the sandbox can see into but must not change.
    shared = Path(tempfile.mkdtemp(prefix="dpbench-canary-"))
    try:
        shared.chmod(0o755)
        canary = shared / "canary.txt"
        canary.write_text("alive")
        canary.chmod(0o644)
        cfg = SandboxConfig(timeout=2.0, guard=guard)
        for name, (program, allowed) in _hostile(canary).items():
            res = run_program(program, cfg)
            assert res.status in allowed, (name, res)
            assert canary.read_text() == "alive", name
        # The runner is alive (we are) and the sandbox still works afterwards.
        assert run_program("assert sum(range(4)) == 6\n", cfg).status == "passed"
        if isolation_mode(cfg) == "uid":
            assert _sandbox_processes(64000) == []  # forks and loops were swept
            # Honest limit of the isolation: world-readable files can be read.
            readable = run_program(f"assert open({str(canary)!r}).read() == 'alive'\n", cfg)
            assert readable.status == "passed"
    finally:
        canary.unlink(missing_ok=True)
        shared.rmdir()


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run the program under a separate uid")
def test_separate_uid_protects_private_files_and_the_runner(tmp_path):
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
    res = run_program(prog, SandboxConfig(guard=False))
    assert res.status == "passed", res  # every attempt was refused by the kernel
    assert private.read_text() == "{}\n"
