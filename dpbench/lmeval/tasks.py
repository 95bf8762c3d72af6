"""dpbench's lm-eval task definitions (``dpbench/lmeval/yaml/``) and one call to evaluate with them.

The YAMLs define ``dpbench_gsm8k`` and the group ``dpbench_minerva_math``
(seven subject tasks) with the hub datasets; their prompts and scorers are
dpbench's own (``yaml/utils.py`` calls `dpbench.tasks.gsm8k` and
`dpbench.tasks.math`), so lm-eval's metric and dpbench's records agree.

For offline data, `local_task_dir` writes a variant that reads a JSONL file
(``dataset_path: json`` with the file's absolute path), including the shipped
YAML for everything else.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Shipped inside the package (package data), so a wheel install runs them too.
TASKS_DIR = Path(__file__).resolve().parent / "yaml"
# dpbench task name -> (lm-eval task or group name, YAML a local-data variant includes)
LMEVAL_TASKS = {
    "gsm8k": ("dpbench_gsm8k", "gsm8k.yaml"),
    "minerva_math": ("dpbench_minerva_math", "_minerva_math_template"),
}


def tasks_dir() -> Path:
    if not TASKS_DIR.is_dir():
        raise FileNotFoundError(
            f"dpbench's lm-eval task definitions are not at {TASKS_DIR}: this install of dpbench lacks its "
            f"package data (reinstall it, e.g. `pip install --force-reinstall dpbench`)"
        )
    return TASKS_DIR


def lmeval_name(task: str) -> str:
    """``gsm8k`` -> ``dpbench_gsm8k``; lm-eval names pass through."""
    if task in LMEVAL_TASKS:
        return LMEVAL_TASKS[task][0]
    known = {v[0] for v in LMEVAL_TASKS.values()}
    if task in known:
        return task
    raise ValueError(f"no lm-eval definition for task {task!r}; valid: {', '.join([*LMEVAL_TASKS, *sorted(known)])}")


def local_task_dir(task: str, data_file: str | Path, workdir: str | Path | None = None) -> Path:
    """Write the local-data variant of ``task`` reading ``data_file``; return its directory.

    The variant has the same lm-eval name (``dpbench_gsm8k`` ...), so load it
    with ``TaskManager(include_path=<dir>, include_defaults=False)``.
    """
    key = next((k for k, v in LMEVAL_TASKS.items() if task in (k, v[0])), None)
    if key is None:
        lmeval_name(task)  # raises with the valid names
    name, include = LMEVAL_TASKS[key]
    path = Path(data_file).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    out = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="dpbench-lmeval-"))
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "include": str(tasks_dir() / include),
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test",
    }
    (out / f"{name}_local.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def task_manager(task: str, data_file: str | Path | None = None, workdir: str | Path | None = None):
    """A `TaskManager` that knows only dpbench's task definitions (fast: lm-eval's own are not indexed)."""
    from lm_eval.tasks import TaskManager

    path = local_task_dir(task, data_file, workdir) if data_file is not None else tasks_dir()
    return TaskManager(include_path=str(path), include_defaults=False)


@dataclass
class LmevalRun:
    results: dict[str, Any] | None  # lm-eval's results (None on ranks other than 0)
    records: list[dict[str, Any]] = field(default_factory=list)  # one per sample, rank 0 only


def evaluate(lm, task: str, *, data_file: str | Path | None = None, limit: int | None = None,
             workdir: str | Path | None = None, **simple_evaluate_kwargs: Any) -> LmevalRun:
    """Run ``task`` through ``lm_eval.simple_evaluate`` with a `DPBenchLM` and join the records.

    lm-eval's results get dpbench's figures (`dpbench.lmeval.results.annotate`). Each record is
    the model's record for that request plus ``correct`` (lm-eval's
    ``exact_match``), ``extracted`` and ``gold`` (dpbench's scorer on the same
    completion) and ``lmeval_task``. ``doc_id`` is a string: the document's index,
    prefixed by the subject for MATH from the hub (``algebra-3``), as the
    dpbench tasks number them.
    """
    import lm_eval

    from ..tasks import get_task

    name = lmeval_name(task)
    start = len(lm.records)
    results = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=task_manager(name, data_file, workdir),
                                      limit=limit, log_samples=True, **simple_evaluate_kwargs)
    mine = lm.records[start:]
    gathered = lm.gather_object(mine)
    if results is None or gathered is None:
        return LmevalRun(None, [])
    records = [r for part in gathered for r in part]
    from .results import annotate

    annotate(results, lm, records)  # NFE, tokens per forward, latency into lm-eval's own results
    scorer = get_task("minerva_math" if "math" in name else "gsm8k")
    samples = {(t, s["doc_id"]): s for t, rows in results.get("samples", {}).items() for s in rows}
    joined = []
    for rec in sorted(records, key=lambda r: (r["task"], r["doc_id"])):
        sample = samples.get((rec["task"], rec["doc_id"]))
        if sample is None:
            raise RuntimeError(f"lm-eval logged no sample for {rec['task']} doc {rec['doc_id']}")
        subject = rec["task"].removeprefix("dpbench_minerva_math_")
        doc_id = f"{subject}-{rec['doc_id']}" if subject != rec["task"] else str(rec["doc_id"])
        gold_text = sample["doc"].get("answer") or sample["doc"].get("solution", "")
        ours = _score(scorer, rec["completion"], gold_text)
        joined.append({**rec, "doc_id": doc_id, "lmeval_task": rec["task"], "correct": bool(sample["exact_match"]),
                       "extracted": ours["extracted"], "gold": ours["gold"], "dpbench_correct": ours["correct"]})
    return LmevalRun(results, joined)


def _score(task, completion: str, gold_text: str) -> dict[str, Any]:
    from ..tasks import gsm8k, math

    module = math if task.name == "minerva_math" else gsm8k
    return module.score_text(task.cut(completion), gold_text)


__all__ = ["LMEVAL_TASKS", "LmevalRun", "TASKS_DIR", "evaluate", "lmeval_name", "local_task_dir", "task_manager"]
