"""GSM8K, 0-shot chain of thought, as the dParallel paper evaluates instruct models.

The prompt is lm-eval's ``Question: ...\\nAnswer:`` followed by the paper's
instruction "Please reason step by step, and put your final answer within
\\boxed{}."; the chat template is applied when the tokenizer has one. The
answer is read from the last ``#### N`` or, failing that, the last
``\\boxed{N}`` (`dpbench.tasks.extract`) and compared numerically with the
number after ``####`` in the reference solution.

Data: ``openai/gsm8k`` (config ``main``) from the hub, or ``--data-file`` with
the hub's JSONL fields ``question`` and ``answer``. The same prompt and scorer
back the lm-eval task ``dpbench_gsm8k`` in ``dpbench/lmeval/yaml/``.
"""

from __future__ import annotations

from typing import Any

from . import register_task
from .base import Doc, Score
from .datafiles import load_rows
from .extract import extract_answer, numbers_equal
from .paper import PaperTask

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
STOP = ("Question:", "</s>", "<|im_end|>")
FIELDS = ("question", "answer")


def prompt_text(question: str) -> str:
    """The user message for one GSM8K question (before any chat template)."""
    return f"Question: {question}\nAnswer: {INSTRUCTION}"


def gold_answer(solution: str) -> str | None:
    """The reference number: what follows ``####`` in a GSM8K solution."""
    return extract_answer(solution)


def score_text(completion: str, solution: str) -> dict[str, Any]:
    """Score one completion against a GSM8K reference solution (used by lm-eval too)."""
    extracted = extract_answer(completion)
    gold = gold_answer(solution)
    return {"correct": numbers_equal(extracted, gold), "extracted": extracted, "gold": gold}


@register_task("gsm8k")
class Gsm8kTask(PaperTask):
    """GSM8K test set (1319 grade-school word problems), 0-shot, answer in \\boxed{} or ####."""

    stop = STOP
    lmeval_task = "dpbench_gsm8k"

    def load(self, split: str) -> list[Doc]:
        rows = load_rows("gsm8k", data_file=self.data_file, hub_path="openai/gsm8k", hub_name="main",
                         split=split, fields=FIELDS)
        return [Doc(doc_id=str(i), question=r["question"], target=r["answer"]) for i, r in enumerate(rows)]

    def prompt_text(self, doc: Doc) -> str:
        return prompt_text(doc.question)

    def score(self, doc: Doc, completion: str) -> Score:
        s = score_text(self.cut(completion), doc.target)
        return Score(correct=s["correct"], extracted=s["extracted"], detail={"gold": s["gold"]})


__all__ = ["INSTRUCTION", "Gsm8kTask", "gold_answer", "prompt_text", "score_text"]
