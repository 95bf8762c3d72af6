"""Runner: records, manifest, resume after an interrupted run, config mismatch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import save_tiny_model

from dpbench.runner import RunConfig, RunConfigMismatch, read_records, read_trace, run
from dpbench.samplers import build_sampler


# The fake task as source, so a subprocess can register it too.
FAKE_TASK = textwrap.dedent(
    '''
    import os, signal
    from dpbench.tasks import Doc, Score, Task, register_task
    
    @register_task("fake-runner")
    class FakeRunnerTask(Task):
        default_params = {"gen_length": 16, "block_length": 8, "steps": 8}
        scored = []  # doc_ids scored in this process, to prove what was recomputed

        def docs(self, split="test", limit=None):
            docs = [Doc(f"d{i}", f"{i} + {i} =", str(2 * i)) for i in range(10)]
            return docs[:limit] if limit is not None else docs

        def score(self, doc, completion):
            FakeRunnerTask.scored.append(doc.doc_id)
            if doc.doc_id == os.environ.get("FAKE_KILL_AT"):
                os.kill(os.getpid(), signal.SIGKILL)  # die like a killed job, mid-batch
            return Score(correct=int(doc.doc_id[1:]) % 3 == 0, extracted=completion[:3])
    '''
)
exec(compile(FAKE_TASK, "fake_task", "exec"))
FakeRunnerTask = globals()["FakeRunnerTask"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    # sharper logits: some positions confident, some not, so thresholds matter
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), sharpen=80.0)


def _cfg(model: str, out: Path, **kw) -> RunConfig:
    return RunConfig(task="fake-runner", model=model, sampler=kw.pop("sampler", "baseline"), out=str(out),
                     batch_size=kw.pop("batch_size", 4), device="cpu", progress=False, **kw)


def test_run_writes_records_manifest_and_trace(tiny_model, tmp_path):
    out = tmp_path / "run"
    summary = run(_cfg(tiny_model, out, limit=6, trace_samples=2))
    recs = read_records(out / "samples.jsonl")
    assert [r["doc_id"] for r in recs] == [f"d{i}" for i in range(6)]
    assert summary.n == summary.new == 6
    for r in recs:
        for key in ("doc_id", "prompt_tokens", "gen_tokens", "nfe", "seconds", "correct", "completion", "extracted"):
            assert key in r
        assert 0 <= r["gen_tokens"] <= 16
        assert r["nfe"] == 8  # baseline: exactly `steps` forwards
    # Timing: the batch's seconds are split in proportion to NFE and add up to the batch.
    first = [r for r in recs if r["batch_size"] == 4][:4]
    assert sum(r["seconds"] for r in first) == pytest.approx(first[0]["batch_seconds"])
    assert summary.accuracy == pytest.approx(2 / 6)  # d0 and d3
    m = json.loads((out / "manifest.json").read_text())
    assert m["task"] == "fake-runner" and m["sampler"] == "baseline" and m["seed"] == 0
    assert m["params"]["steps"] == 8 and m["params"]["gen_length"] == 16
    assert {"versions", "git_commit", "device_info", "batch_size", "model_info"} <= set(m)
    assert m["device_info"]["step_kernel"].split()[0] in ("on", "off", "unavailable")  # CPU timings say which step ran
    trace = read_trace(out)
    assert len(trace) == 2 and len(trace[0]["step"]) == 16
    assert max(trace[0]["step"]) == trace[0]["nfe"] == 8


def test_prompt_tokens_counts_real_prompt_not_padding(tiny_model, tmp_path):
    from dpbench.models import build_char_tokenizer

    run(_cfg(tiny_model, tmp_path / "r", limit=4))
    tok = build_char_tokenizer()
    task = FakeRunnerTask()
    for r, doc in zip(read_records(tmp_path / "r" / "samples.jsonl"), task.docs(limit=4)):
        assert r["prompt_tokens"] == len(tok(task.build_prompt(doc, tok), add_special_tokens=False).input_ids)


def test_batched_records_match_unbatched(tiny_model, tmp_path):
    run(_cfg(tiny_model, tmp_path / "b1", limit=5, batch_size=1, sampler="dparallel"))
    run(_cfg(tiny_model, tmp_path / "b4", limit=5, batch_size=4, sampler="dparallel"))
    keys = ("doc_id", "completion", "nfe", "gen_tokens", "prompt_tokens")
    one = [{k: r[k] for k in keys} for r in read_records(tmp_path / "b1" / "samples.jsonl")]
    four = [{k: r[k] for k in keys} for r in read_records(tmp_path / "b4" / "samples.jsonl")]
    assert one == four
    assert len({r["nfe"] for r in one}) > 1  # the threshold sampler really varies per sample


def test_task_params_filtered_and_user_params_win():
    task = FakeRunnerTask()
    smp = build_sampler("dparallel", {"threshold": "0.3"}, task=task)  # task's `steps` is not a dparallel param
    assert smp.params()["threshold"] == 0.3 and smp.params()["gen_length"] == 16
    assert build_sampler("fast-dllm", {}, task=task).name == "confidence"
    with pytest.raises(ValueError, match="threshhold"):
        build_sampler("dparallel", {"threshhold": "0.3"}, task=task)


def test_config_mismatch_is_refused(tiny_model, tmp_path):
    out = tmp_path / "run"
    run(_cfg(tiny_model, out, limit=2))
    before = (out / "samples.jsonl").read_bytes()
    with pytest.raises(RunConfigMismatch, match=r"sampler: 'baseline' there, 'dparallel' now.*another --out"):
        run(_cfg(tiny_model, out, limit=2, sampler="dparallel"))
    with pytest.raises(RunConfigMismatch, match=r"params.steps: 8 there, 16 now"):
        run(_cfg(tiny_model, out, limit=2, params={"steps": "16"}))
    assert (out / "samples.jsonl").read_bytes() == before
    # A different limit is the same run, extended.
    assert run(_cfg(tiny_model, out, limit=3)).new == 1


def test_params_added_since_a_run_count_as_their_defaults(tiny_model, tmp_path):
    out = tmp_path / "run"
    run(_cfg(tiny_model, out, limit=2))
    manifest = json.loads((out / "manifest.json").read_text())
    for p in ("cuda_graph", "early_stop"):  # as an older dpbench wrote it, before these params existed
        del manifest["params"][p]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run(_cfg(tiny_model, out, limit=3)).new == 1
    with pytest.raises(RunConfigMismatch, match=r"params.early_stop: False there, True now"):
        run(_cfg(tiny_model, out, limit=3, params={"early_stop": "true"}))


def test_resume_after_killed_process_and_truncated_line(tiny_model, tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "job.py"
    script.write_text(
        FAKE_TASK
        + f"\nfrom dpbench.runner import RunConfig, run\nrun(RunConfig(task='fake-runner', model={tiny_model!r}, "
        f"sampler='baseline', out={str(out)!r}, batch_size=4, device='cpu', progress=False))\n"
    )
    env = {**os.environ, "FAKE_KILL_AT": "d6", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    survived = read_records(out / "samples.jsonl")
    assert [r["doc_id"] for r in survived] == [f"d{i}" for i in range(6)]  # scored before the kill: all on disk
    # A kill in the middle of a write leaves half a line: simulate it on top.
    with open(out / "samples.jsonl", "a") as fh:
        fh.write('{"doc_id": "d6", "prompt_tok')
    prefix = b"".join(line + b"\n" for line in (out / "samples.jsonl").read_bytes().split(b"\n")[:6])

    FakeRunnerTask.scored.clear()
    summary = run(_cfg(tiny_model, out))
    assert summary.new == 4 and summary.n == 10
    assert set(FakeRunnerTask.scored) == {"d6", "d7", "d8", "d9"}  # nothing finished was recomputed
    data = (out / "samples.jsonl").read_bytes()
    assert data.startswith(prefix)  # nothing finished was lost or rewritten
    recs = read_records(out / "samples.jsonl")
    assert sorted(r["doc_id"] for r in recs) == sorted(f"d{i}" for i in range(10))
    # A third run has nothing left to do.
    FakeRunnerTask.scored.clear()
    assert run(_cfg(tiny_model, out)).new == 0 and FakeRunnerTask.scored == []


def test_read_records_truncation_rules(tmp_path):
    p = tmp_path / "samples.jsonl"
    p.write_text('{"doc_id": "a"}\n{"doc_id": "b"}\n{"doc_')
    assert [r["doc_id"] for r in read_records(p)] == ["a", "b"]
    read_records(p, repair=True)
    assert p.read_text() == '{"doc_id": "a"}\n{"doc_id": "b"}\n'
    p.write_text('{"doc_id": "a"}')  # complete record, newline lost
    read_records(p, repair=True)
    assert p.read_text() == '{"doc_id": "a"}\n'
    p.write_text('{"doc_id": "a"}\n{"doc_\n{"doc_id": "c"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(p)


def test_records_without_manifest_are_refused(tiny_model, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "samples.jsonl").write_text('{"doc_id": "d0"}\n')
    with pytest.raises(RunConfigMismatch, match="no manifest.json"):
        run(_cfg(tiny_model, out, limit=1))


def test_cli_run_resume_and_mismatch(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from dpbench.cli import app

    out = tmp_path / "cli"
    args = ["run", "fake-runner", "--sampler", "dparallel", "--model", tiny_model, "-p", "threshold=0.3",
            "--limit", "3", "--batch-size", "2", "--device", "cpu", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "n=3 (new 3)" in res.output
    assert json.loads((out / "manifest.json").read_text())["params"]["threshold"] == 0.3
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "n=3 (new 0)" in res.output
    res = CliRunner().invoke(app, [*args[:7], "threshold=0.4", *args[8:]])
    text = " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box
    assert res.exit_code != 0 and "different configuration (params.threshold: 0.3 there, 0.4 now)" in text and "threshold" in text


def test_demo_on_a_tiny_model(tiny_model, tmp_path):
    from dpbench.demo import run_demo

    runs = (("baseline", tiny_model, "baseline", {}), ("dparallel-0.5", tiny_model, "dparallel", {"threshold": 0.5}),
            ("absent", str(tmp_path / "no-such-model"), "dparallel", {}))
    res = run_demo(tmp_path / "demo", limit=3, batch_size=2, progress=False, task="fake-runner", runs=runs)
    assert res.skipped == [f"absent (model {tmp_path / 'no-such-model'} not installed)"]
    assert list(res.table["run"]) == ["baseline", "dparallel-0.5"]
    names = {p.name for p in res.files}
    assert {"report.md", "report.csv", "speedup.png", "speedup.svg", "convergence.svg"} <= names
    assert "wall-clock" in (tmp_path / "demo" / "report.md").read_text()
    # Starting over (the default) replaces the old records instead of resuming them.
    (tmp_path / "demo" / "baseline" / "samples.jsonl").write_text("")
    res = run_demo(tmp_path / "demo", limit=2, batch_size=2, progress=False, task="fake-runner", runs=runs[:1])
    assert res.table.loc[0, "n"] == 2
