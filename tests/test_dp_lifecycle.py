"""Data-parallel runs leave nothing behind: killing the launcher (or its process group) stops every rank,
torchrun leaves no /tmp/torchelastic_* directory, and the summary counts every rank's records."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAUNCHER_ENV = "DPBENCH_LAUNCHER_PID"


def _launched_by(launcher: int) -> list[int]:
    """Every process started under this launcher (the torchrun agent and the ranks carry its pid)."""
    mark = f"{LAUNCHER_ENV}={launcher}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def _launch(tiny_dir, out: Path, tmp: Path, limit: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dpbench", "run", "arith", "--sampler", "dparallel", "--model", str(tiny_dir),
           "-p", "gen_length=16,block_length=8", "--limit", str(limit), "--batch-size", "1", "--device", "cpu",
           "--num-processes", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a shell job would be


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("how", ["SIGTERM to the process group", "SIGKILL to the launcher"])
def test_killing_the_launcher_stops_every_rank(tiny_dir, tmp_path, how):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "run"
    proc = _launch(tiny_dir, out, tmp, limit=5000)
    try:
        _wait(lambda: all((out / f"samples.rank{r}.jsonl").exists() and (out / f"samples.rank{r}.jsonl").stat().st_size
                          for r in (0, 1)), 240, "both ranks to write records")
        assert len(_launched_by(proc.pid)) >= 3  # the agent and two ranks
        if how.startswith("SIGTERM"):
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        _wait(lambda: not _launched_by(proc.pid), 30, "every rank to stop")
    finally:
        for pid in _launched_by(proc.pid):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    left = [p.name for p in tmp.iterdir()]
    assert not [n for n in left if n.startswith("torchelastic_")], left
    if how.startswith("SIGTERM"):
        assert left == [], left  # the launcher removed its private directory
    else:
        assert [n for n in left if n.startswith("dpbench-torchrun-")], left  # SIGKILL: no chance to clean...
    assert (out / "samples.rank0.jsonl").stat().st_size > 0  # finished records are kept for the next run


def test_summary_counts_every_ranks_records_and_stale_dirs_are_cleaned(tiny_dir, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stale = tmp / "dpbench-torchrun-999999999-abc"  # left by a launcher killed with SIGKILL (pid long gone)
    (stale / "logs").mkdir(parents=True)
    proc = _launch(tiny_dir, tmp_path / "run", tmp, limit=7)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert re.search(r"n=7 \(new 7\)", stdout), stdout  # rank 0 alone wrote 4 of them
    assert list(tmp.iterdir()) == []  # the stale directory and this launch's own are gone
