"""The task interface: documents -> prompts -> scored completions.

A task knows its documents, how to turn one into a prompt (chat template
applied when the tokenizer has one), how to score a completion, and the sampler
parameters it is usually run with. The runner, the lm-eval bridge and
distillation all speak this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Doc:
    doc_id: str
    question: str  # the user-facing problem text
    target: str  # reference answer / solution (task-specific)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Score:
    correct: bool
    extracted: str | None = None  # what the scorer read out of the completion
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. execution status, reason


class Task:
    """Subclasses set ``name`` and implement `docs`, `prompt_text` and `score`."""

    name: str = ""
    # Sampler parameters this task is run with unless the user overrides them.
    default_params: dict[str, Any] = {}
    # Per-sampler overrides (e.g. {"dparallel": {"threshold": 0.45}}).
    sampler_params: dict[str, dict[str, Any]] = {}

    def docs(self, split: str = "test", limit: int | None = None) -> list[Doc]:
        raise NotImplementedError

    def prompt_text(self, doc: Doc) -> str:
        """The user message for ``doc`` (before any chat template)."""
        return doc.question

    def build_prompt(self, doc: Doc, tokenizer) -> str:
        """The full prompt string: chat template if the tokenizer has one, else the plain text."""
        text = self.prompt_text(doc)
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
        return text

    def score(self, doc: Doc, completion: str) -> Score:
        raise NotImplementedError

    def params_for(self, sampler: str) -> dict[str, Any]:
        return {**self.default_params, **self.sampler_params.get(sampler, {})}
