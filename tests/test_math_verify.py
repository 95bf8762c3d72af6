"""MATH answers are checked with math-verify (the normaliser only where it cannot parse), the same way
through `dpbench run minerva_math` (task.score) and lm-eval's dpbench_minerva_math task."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpbench.tasks.math import check_answer, score_text

MATH = Path(__file__).parent / "fixtures" / "math_tiny.jsonl"

EQUIVALENT = [
    (r"0.5", r"\frac{1}{2}"),
    (r"x=2", r"2"),
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}"),
    (r"\dfrac{3}{4}", r"0.75"),
    (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"(x+1)^2", r"x^2+2x+1"),
    (r"10\%", r"10"),
    (r"90^\circ", r"90"),
    (r"\{1,2\}", r"\{2,1\}"),
    (r"-\frac23", r"-\frac{2}{3}"),
    (r"$24$", r"24"),
]
DIFFERENT = [
    (r"\frac{1}{3}", r"\frac{1}{2}"),
    (r"(2,1)", r"(1,2)"),  # an ordered pair, not a set
    (r"3", r"4"),
    (r"\sqrt{2}", r"2"),
    (r"x=3", r"2"),
]


@pytest.mark.parametrize("pred,gold", EQUIVALENT)
def test_equivalent_forms_are_correct(pred, gold):
    assert check_answer(pred, gold) == (True, "math_verify")


@pytest.mark.parametrize("pred,gold", DIFFERENT)
def test_different_answers_are_wrong(pred, gold):
    assert check_answer(pred, gold) == (False, "math_verify")


def test_the_normaliser_decides_only_where_math_verify_cannot_parse():
    assert check_answer(r"\frac{", r"\frac{") == (True, "normalizer")  # unparseable, identical after normalising
    assert check_answer(r"\frac{", r"\frac{1}{2}") == (False, "normalizer")
    assert check_answer(None, "2") == (False, "no answer")
    s = score_text("so the answer is... Final Answer: The final answer is $\\sqrt{2}/2$. I hope it is correct.",
                   "Thus $\\boxed{\\frac{\\sqrt{2}}{2}}$.")
    assert s == {"correct": True, "extracted": "$\\sqrt{2}/2$", "gold": "\\frac{\\sqrt{2}}{2}", "checked_by": "math_verify"}


def test_lmeval_task_and_dpbench_task_score_the_same(char_tokenizer, tmp_path):
    """One scripted answer (sqrt(2)/2) against four references: equal to two of them only symbolically
    (the old string/number normaliser said no to both), and both scoring paths agree sample by sample."""
    from test_lmeval import ScriptedModel

    from dpbench.lmeval import DPBenchLM, evaluate
    from dpbench.models import DiffusionLM
    from dpbench.tasks import get_task
    from dpbench.tasks.math import normalized_equal

    answer = "Final Answer: The final answer is $\\sqrt{2}/2$. I hope it is correct."
    lm = DiffusionLM(ScriptedModel(char_tokenizer, answer, 80), mask_id=char_tokenizer.mask_token_id,
                     eos_token_ids=[char_tokenizer.eos_token_id])
    dl = DPBenchLM(lm=lm, tokenizer=char_tokenizer, sampler="dparallel", gen_length=80, block_length=16, batch_size=4,
                   warmup=False)
    run = evaluate(dl, "minerva_math", data_file=MATH, workdir=tmp_path)
    task = get_task("minerva_math", data_file=MATH)
    docs = {d.doc_id: d for d in task.docs()}
    by_doc = {r["doc_id"]: r for r in run.records}
    assert [by_doc[str(i)]["correct"] for i in range(4)] == [True, False, True, False]
    for doc_id, rec in by_doc.items():
        ours = task.score(docs[doc_id], rec["completion"])  # what `dpbench run minerva_math --engine dpbench` records
        assert ours.correct == rec["correct"] == rec["dpbench_correct"]
        assert ours.detail["checked_by"] == "math_verify"
    assert not normalized_equal("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}")  # what changed: the old check said no
