"""Shared base of the paper's benchmarks (GSM8K, MATH, HumanEval, MBPP).

Default sampler parameters are the dParallel paper's LLaDA settings: answers
of 256 tokens in blocks of 32, 256 steps for the fixed-step baseline, entropy
threshold 0.5 for dparallel (MBPP overrides it to 0.45) and confidence
threshold 0.9 for Fast-dLLM's confidence sampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Doc, Task
from .datafiles import truncate_at

PAPER_PARAMS: dict[str, Any] = {"gen_length": 256, "block_length": 32, "steps": 256}
PAPER_SAMPLER_PARAMS: dict[str, dict[str, Any]] = {"dparallel": {"threshold": 0.5}, "confidence": {"threshold": 0.9}}


class PaperTask(Task):
    """A benchmark with the paper's sampler defaults, optional local data, and stop strings."""

    default_params = PAPER_PARAMS
    sampler_params = PAPER_SAMPLER_PARAMS
    # lm-eval's ``until``: the completion is cut at the first of these before scoring.
    stop: tuple[str, ...] = ()
    # The name of this task in dpbench/lmeval/yaml/ (None: scored by dpbench only).
    lmeval_task: str | None = None

    def __init__(self, data_file: str | Path | None = None) -> None:
        self.data_file = str(Path(data_file).resolve()) if data_file is not None else None
        self._docs: dict[str, list[Doc]] = {}

    def load(self, split: str) -> list[Doc]:
        raise NotImplementedError

    def docs(self, split: str = "test", limit: int | None = None) -> list[Doc]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if split not in self._docs:
            self._docs[split] = self.load(split)
        docs = self._docs[split]
        return docs if limit is None else docs[:limit]

    def cut(self, completion: str) -> str:
        return truncate_at(completion, self.stop)

    def params_for(self, sampler: str) -> dict[str, Any]:
        """Task defaults and the sampler's own overrides, restricted to what that sampler accepts."""
        from ..samplers import sampler_class
        from ..samplers.registry import sampler_params

        cls = sampler_class(sampler)
        merged = {**self.default_params, **self.sampler_params.get(cls.name, {})}
        valid = sampler_params(cls.name)
        return {k: v for k, v in merged.items() if k in valid}


__all__ = ["PAPER_PARAMS", "PAPER_SAMPLER_PARAMS", "PaperTask"]
