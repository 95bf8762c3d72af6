"""MBPP, 3-shot in lm-eval's ``mbpp`` format, scored by running its asserts in the sandbox.

Prompt (per example and for the problem): "You are an expert Python programmer,
and here is your task: {text} Your code should pass these tests:\\n\\n{3 asserts}
\\n[BEGIN]\\n", each example followed by its code and ``[DONE]``; generation stops
at ``[DONE]``. The three examples are MBPP tasks 2, 3 and 4: taken from the data
file when it holds them, else from the installed lm-eval.

Data: ``google-research-datasets/mbpp`` (config ``full``, test split: task ids
11-510) from the hub, or ``--data-file`` with the hub's fields ``task_id``,
``text``, ``code``, ``test_list`` (``test_setup_code`` optional). Rows whose
task id is a few-shot example are not scored. The paper's dParallel threshold
for MBPP is 0.45.
"""

from __future__ import annotations

import re
from typing import Any

from ..execution import free_names, sanitize
from . import register_task
from .base import Doc
from .code import CodeTask
from .datafiles import lmeval_fewshot, load_rows
from .paper import PAPER_SAMPLER_PARAMS

FIELDS = ("task_id", "text", "code", "test_list")
FEWSHOT_IDS = (2, 3, 4)
STOP = ("[DONE]",)


def doc_to_text(text: str, tests: list[str]) -> str:
    asserts = "\n".join(tests[:3])
    return (f"You are an expert Python programmer, and here is your task: {text} "
            f"Your code should pass these tests:\n\n{asserts}\n[BEGIN]\n")


def function_name(code: str) -> str | None:
    """The first function the reference solution defines (the one the asserts call)."""
    m = re.search(r"^\s*def\s+(\w+)\s*\(", code, re.MULTILINE)
    return m.group(1) if m else None


@register_task("mbpp")
class MbppTask(CodeTask):
    """Mostly Basic Python Problems (500 test problems), 3-shot."""

    stop = STOP
    sampler_params = {**PAPER_SAMPLER_PARAMS, "dparallel": {"threshold": 0.45}}
    _fewshot: list[dict[str, Any]] | None = None

    def load(self, split: str) -> list[Doc]:
        rows = load_rows("mbpp", data_file=self.data_file, hub_path="google-research-datasets/mbpp",
                         hub_name="full", split=split, fields=FIELDS)
        shots = {int(r["task_id"]): r for r in rows if int(r["task_id"]) in FEWSHOT_IDS}
        if len(shots) == len(FEWSHOT_IDS):
            self._fewshot = [shots[i] for i in FEWSHOT_IDS]
        return [
            Doc(doc_id=str(r["task_id"]), question=r["text"], target=r["code"],
                meta={"tests": list(r["test_list"]), "setup": r.get("test_setup_code") or "",
                      "entry_point": function_name(r["code"])})
            for r in rows if int(r["task_id"]) not in FEWSHOT_IDS
        ]

    def fewshot(self) -> list[dict[str, Any]]:
        if self._fewshot is None:
            self._fewshot = lmeval_fewshot("mbpp")
        return self._fewshot

    def prompt_text(self, doc: Doc) -> str:
        head = "".join(f"{doc_to_text(e['text'], e['test_list'])}{e['code']}\n[DONE]\n\n" for e in self.fewshot())
        return head + doc_to_text(doc.question, doc.meta["tests"])

    def program(self, doc: Doc, completion: str) -> tuple[str, str]:
        code = sanitize(self.cut(completion), doc.meta["entry_point"])
        tests = "\n".join(doc.meta["tests"])
        return code, f"{code}\n\n{doc.meta['setup']}\n{tests}\n"

    def test_parts(self, doc: Doc) -> tuple[str, str, tuple[str, ...]]:
        """Setup code and asserts run in the judge; the function (and any free name) comes from the program."""
        test = f"{doc.meta['setup']}\n" + "\n".join(doc.meta["tests"]) + "\n"
        entry = doc.meta["entry_point"]
        return "", test, tuple(sorted({*([entry] if entry else []), *free_names(test)}))


__all__ = ["MbppTask", "doc_to_text", "function_name"]
