"""Base of the code tasks: a completion is sanitized and judged in the sandbox.

Verdicts come from split mode (`dpbench.execution.run_split`): the sanitized
code runs in the sandbox and only answers calls; the task's test runs in the
trusted judge and compares plain data, so nothing the program does besides
returning values can change its verdict.

A document whose *reference solution* fails in split mode but passes when the
whole program runs in the sandbox needs what split mode cannot give (a test
that passes a function, a result that is not plain data, identity checks): its
completions fall back to in-sandbox execution, where the program reports its
own verdict. That is decided per document from the reference, never from the
completion (a completion cannot choose the weaker mode by failing in split
mode), computed when a completion of it first fails, and cached. A document
without a reference solution never falls back.

A sample's `Score.detail`: ``status`` (passed / failed / timed_out), ``reason``,
``exec_seconds``, ``mode`` (``split``, or ``program`` for a fallback, then with
``fallback``: why the reference needs it). `Score.extracted` is the sanitized code.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..execution import ExecResult, SandboxConfig, SplitJob, run_programs
from .base import Doc, Score
from .paper import PaperTask


class CodeTask(PaperTask):
    """Subclasses implement `load`, `program` (sanitized code, whole program) and `test_parts`."""

    def __init__(self, data_file: str | Path | None = None, *, timeout: float = 10.0, workers: int = 1,
                 sandbox: SandboxConfig | None = None) -> None:
        super().__init__(data_file)
        self.sandbox = sandbox or SandboxConfig(timeout=timeout)
        if data_file is not None:  # the task's data holds its tests and reference solutions
            self.sandbox = replace(self.sandbox, hidden=(*self.sandbox.hidden, str(Path(data_file).resolve())))
        self.workers = workers
        self._fallback: dict[str, str | None] = {}  # doc_id -> why its reference needs program mode (None: split)

    def program(self, doc: Doc, completion: str) -> tuple[str, str]:
        raise NotImplementedError

    def test_parts(self, doc: Doc) -> tuple[str, str, tuple[str, ...]]:
        """``(defs, test, names)`` for split mode: trusted definitions, the test, names taken from the program."""
        raise NotImplementedError

    def reference(self, doc: Doc) -> str | None:
        """The document's reference solution as a completion (None: the data has none)."""
        return doc.target or None

    def split_job(self, doc: Doc, code: str) -> SplitJob:
        defs, test, names = self.test_parts(doc)
        return SplitJob(code=code, test=test, defs=defs, names=names)

    def score(self, doc: Doc, completion: str) -> Score:
        return self.score_many([doc], [completion])[0]

    def score_many(self, docs: list[Doc], completions: list[str], *, progress: bool = False) -> list[Score]:
        """Score many completions, ``self.workers`` programs at a time."""
        if len(docs) != len(completions):
            raise ValueError(f"got {len(docs)} docs but {len(completions)} completions")
        built = [self.program(d, c) for d, c in zip(docs, completions)]
        jobs = [self.split_job(d, code) for d, (code, _) in zip(docs, built)]
        results = run_programs(jobs, self.sandbox, workers=self.workers, progress=progress)
        failed = [i for i, r in enumerate(results) if not r.passed]
        self._learn_fallbacks([docs[i] for i in failed])
        redo = [i for i in failed if self._fallback.get(docs[i].doc_id)]
        if redo:
            again = run_programs([built[i][1] for i in redo], self.sandbox, workers=self.workers)
            for i, r in zip(redo, again):
                results[i] = r
        return [_score(code, r, self._fallback.get(d.doc_id) if r.mode == "program" else None)
                for d, (code, _), r in zip(docs, built, results)]

    def _learn_fallbacks(self, docs: list[Doc]) -> None:
        """Decide split or program mode for each new document from its reference solution."""
        todo = {d.doc_id: d for d in docs if d.doc_id not in self._fallback}
        with_ref = [(d, self.reference(d)) for d in todo.values()]
        for d, ref in with_ref:
            if ref is None:
                self._fallback[d.doc_id] = None
        built = [(d, self.program(d, ref)) for d, ref in with_ref if ref is not None]
        if not built:
            return
        split = run_programs([self.split_job(d, code) for d, (code, _) in built], self.sandbox, workers=self.workers)
        unsplit = [(d, full, r) for (d, (_, full)), r in zip(built, split) if not r.passed]
        for (d, _), r in zip(built, split):
            if r.passed:
                self._fallback[d.doc_id] = None
        whole = run_programs([full for _, full, _ in unsplit], self.sandbox, workers=self.workers)
        for (d, _, r_split), r_whole in zip(unsplit, whole):
            # Passes whole but not split: split mode cannot express this test. Fails both: a broken
            # document, judged in split mode like any other.
            self._fallback[d.doc_id] = f"reference solution fails in split mode: {r_split.reason}" if r_whole.passed else None

    def fallback_docs(self) -> dict[str, str]:
        """Documents found so far whose completions run in program mode, with the reason."""
        return {k: v for k, v in self._fallback.items() if v}


def _score(code: str, r: ExecResult, fallback: str | None) -> Score:
    detail = {"status": r.status, "reason": r.reason, "exec_seconds": round(r.seconds, 4), "mode": r.mode}
    if fallback:
        detail["fallback"] = fallback
    return Score(correct=r.passed, extracted=code, detail=detail)


__all__ = ["CodeTask"]
