"""A 2-process CPU data-parallel run (torchrun, gloo) gives the same records as a 1-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpbench.runner import RunConfig, read_records, run

KEYS = ("doc_id", "correct", "nfe", "gen_tokens", "prompt_tokens", "completion", "extracted")


def _rows(path: Path) -> list[dict]:
    return [{k: r[k] for k in KEYS} for r in read_records(path / "samples.jsonl")]


def test_two_processes_match_one(tmp_path, tiny_dir):
    params = ["-p", "gen_length=16,block_length=8,threshold=0.8"]
    one = tmp_path / "one"
    run(RunConfig(task="arith", model=str(tiny_dir), sampler="dparallel",
                  params={"gen_length": 16, "block_length": 8, "threshold": 0.8},
                  limit=10, batch_size=3, out=str(one), device="cpu", progress=False))
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dpbench", "run", "arith", "--sampler", "dparallel", "--model", str(tiny_dir), *params,
           "--limit", "10", "--batch-size", "3", "--out", str(two), "--device", "cpu", "--num-processes", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert not list(two.glob("samples.rank*.jsonl"))  # merged and removed
    assert _rows(two) == _rows(one)  # same records, same (document) order
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2


def test_leftover_rank_files_are_merged_on_resume(tmp_path, tiny_dir):
    cfg = RunConfig(task="arith", model=str(tiny_dir), sampler="dparallel",
                    params={"gen_length": 16, "block_length": 8}, limit=6, batch_size=2, out=str(tmp_path / "r"),
                    device="cpu", progress=False)
    run(cfg)
    out = tmp_path / "r"
    lines = (out / "samples.jsonl").read_text().splitlines()
    # Pretend a data-parallel run was killed after ranks wrote records but before the merge.
    (out / "samples.jsonl").write_text("\n".join(lines[:2]) + "\n")
    (out / "samples.rank0.jsonl").write_text(lines[2] + "\n" + lines[4] + "\n")
    (out / "samples.rank1.jsonl").write_text(lines[3] + "\n" + lines[5][: len(lines[5]) // 2])  # truncated
    summary = run(cfg)
    assert summary.new == 1  # only the sample whose line was cut is decoded again
    assert [r["doc_id"] for r in read_records(out / "samples.jsonl")] == [json.loads(x)["doc_id"] for x in lines[:5]] + [json.loads(lines[5])["doc_id"]]
    assert not list(out.glob("samples.rank*.jsonl"))


def test_data_file_on_a_builtin_task_is_refused(tmp_path, tiny_dir):
    with pytest.raises(ValueError, match="data_file"):
        run(RunConfig(task="arith", model=str(tiny_dir), sampler="dparallel", data_file=str(tmp_path / "x.jsonl"),
                      out=str(tmp_path / "o"), progress=False))


def test_run_gsm8k_goes_through_lm_eval(tmp_path, tiny_dir):
    """`dpbench run gsm8k` uses lm_eval.simple_evaluate; the dpbench engine gives the same records."""
    data = Path(__file__).parent / "fixtures" / "gsm8k_tiny.jsonl"
    common = dict(task="gsm8k", model=str(tiny_dir), sampler="dparallel", data_file=str(data), limit=4, batch_size=2,
                  params={"gen_length": 16, "block_length": 8, "threshold": 0.8}, device="cpu", progress=False)
    via_lmeval = run(RunConfig(**common, out=str(tmp_path / "lmeval")))
    own = run(RunConfig(**common, out=str(tmp_path / "own"), engine="dpbench"))
    assert via_lmeval.n == own.n == 4
    a = read_records(tmp_path / "lmeval" / "samples.jsonl")
    b = {r["doc_id"]: r for r in read_records(tmp_path / "own" / "samples.jsonl")}
    assert all("lmeval_task" in r for r in a)
    for r in a:
        mine = b[str(r["doc_id"])]
        assert (r["completion"], r["nfe"], r["correct"]) == (mine["completion"], mine["nfe"], mine["correct"])
    assert (tmp_path / "lmeval" / "lmeval_results.json").exists()
