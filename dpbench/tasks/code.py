"""Base of the code tasks: a completion is sanitized, joined with the tests, and run in the sandbox.

A sample's `Score.detail` records the execution verdict: ``status`` (passed /
failed / timed_out), ``reason`` and ``exec_seconds``; `Score.extracted` is the
sanitized code that ran (before the tests were appended).
"""

from __future__ import annotations

from pathlib import Path

from ..execution import ExecResult, SandboxConfig, run_programs
from .base import Doc, Score
from .paper import PaperTask


class CodeTask(PaperTask):
    """Subclasses implement `load` and `program` (sanitized code, full program)."""

    def __init__(self, data_file: str | Path | None = None, *, timeout: float = 10.0, workers: int = 1,
                 sandbox: SandboxConfig | None = None) -> None:
        super().__init__(data_file)
        self.sandbox = sandbox or SandboxConfig(timeout=timeout)
        self.workers = workers

    def program(self, doc: Doc, completion: str) -> tuple[str, str]:
        raise NotImplementedError

    def score(self, doc: Doc, completion: str) -> Score:
        return self.score_many([doc], [completion])[0]

    def score_many(self, docs: list[Doc], completions: list[str], *, progress: bool = False) -> list[Score]:
        """Score many completions, ``self.workers`` programs at a time."""
        if len(docs) != len(completions):
            raise ValueError(f"got {len(docs)} docs but {len(completions)} completions")
        built = [self.program(d, c) for d, c in zip(docs, completions)]
        results = run_programs([p for _, p in built], self.sandbox, workers=self.workers, progress=progress)
        return [_score(code, r) for (code, _), r in zip(built, results)]


def _score(code: str, r: ExecResult) -> Score:
    detail = {"status": r.status, "reason": r.reason, "exec_seconds": round(r.seconds, 4)}
    return Score(correct=r.passed, extracted=code, detail=detail)


__all__ = ["CodeTask"]
