"""What `dpbench report` / `dpbench plot` can read: run directories and lm-eval output directories.

A *run directory* has ``manifest.json`` + ``samples.jsonl`` (dpbench.records). An
*lm-eval output* is what ``python -m dpbench.lmeval ... --output_path DIR --log_samples``
writes: ``DIR/<model>/results_<time>.json`` and ``samples_<task>_<time>.jsonl``, whose
lines carry dpbench's per-sample figures under ``"dpbench"`` (NFE, tokens, seconds;
see `dpbench.lmeval.results`). Each (results file, task) becomes one run; MATH's
seven subject tasks are read as one ``minerva_math`` run.

Anything else given on the command line (a `dpbench bench` output, a report folder,
a file) is skipped with a one-line note, so ``dpbench report runs/*`` works on a
folder that holds more than runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Run:
    label: str
    path: Path
    manifest: dict[str, Any]
    records: pd.DataFrame
    traces: list[dict[str, Any]] = field(default_factory=list)


def _what_is(path: Path) -> str:
    if (path / "bench.json").is_file():
        return "a `dpbench bench` output"
    if (path / "report.csv").is_file() or (path / "sweep.csv").is_file():
        return "a report folder"
    return "a directory without manifest.json"


def lmeval_results_files(path: Path) -> list[Path]:
    """lm-eval results files at ``path``: the file itself, or ``results_*.json`` in it or one level down."""
    if path.is_file():
        return [path] if path.name.startswith("results") and path.suffix == ".json" else []
    return sorted(path.glob("results_*.json")) + sorted(path.glob("*/results_*.json"))


def find_runs(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Every run at ``paths`` (in the order given) and one note per path that was skipped."""
    from ..records import MANIFEST

    runs: list[Run] = []
    notes: list[str] = []
    files: list[str] = []
    for p in map(Path, paths):
        if p.is_file() and not lmeval_results_files(p):
            files.append(p.name)  # e.g. the charts next to runs in `results/demo/*`: one note for all of them
        elif not p.exists():
            notes.append(f"{p}: skipped, no such file or directory")
        elif p.is_dir() and (p / MANIFEST).is_file():
            runs.append(_run_dir(p))
        elif lmeval_results_files(p):
            found = _lmeval_runs(p)
            runs += found
            if not found:
                notes.append(f"{p}: skipped, an lm-eval output without dpbench's per-sample figures "
                             f"(run it through `python -m dpbench.lmeval ... --log_samples`)")
        else:
            notes.append(f"{p}: skipped, not a run directory ({_what_is(p)})")
    if files:
        shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
        notes.append(f"skipped {len(files)} file(s), not run directories: {shown}")
    _unique_labels(runs)
    return runs, notes


def load_runs(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """`find_runs`, refusing when nothing readable is left (the error names each path's problem)."""
    from ..records import MANIFEST

    runs, notes = find_runs(paths)
    if not runs:
        if len(paths) == 1 and Path(paths[0]).is_dir():
            raise ValueError(f"{paths[0]} is not a run directory: it has no {MANIFEST}")
        raise ValueError("no run directories among the paths given: " + "; ".join(notes))
    return runs, notes


def load_run(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """``(manifest, records)`` of one run directory."""
    from ..records import MANIFEST, SAMPLES, read_samples

    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).is_file():
        raise ValueError(f"{run_dir} is not a run directory: it has no {MANIFEST}")
    manifest = json.loads((run_dir / MANIFEST).read_text())
    return manifest, pd.DataFrame(read_samples(run_dir / SAMPLES))  # a repeated doc_id or non-record line: an error


def _run_dir(d: Path) -> Run:
    from ..records import read_trace

    manifest, df = load_run(d)
    return Run(d.name, d, manifest, df, read_trace(d))


def _unique_labels(runs: list[Run]) -> None:
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        for r in runs:
            r.label = str(r.path) if r.label == r.path.name else f"{r.path}:{r.manifest.get('task')}"


def _task_of(lmeval_task: str) -> str:
    """dpbench's task name for an lm-eval task (``dpbench_gsm8k`` -> ``gsm8k``, MATH subjects -> ``minerva_math``)."""
    if lmeval_task.startswith("dpbench_minerva_math"):
        return "minerva_math"
    return lmeval_task.removeprefix("dpbench_")


def _lmeval_runs(path: Path) -> list[Run]:
    files = lmeval_results_files(path)
    runs = []
    for res_file in files:
        results = json.loads(res_file.read_text())
        stamp = res_file.stem.removeprefix("results_")
        config = results.get("config", {})
        dp = config.get("dpbench") or {}
        by_task: dict[str, list[dict[str, Any]]] = {}
        for name in results.get("configs", {}):
            samples = sorted(res_file.parent.glob(f"samples_{name}_{stamp}.jsonl"))
            rows = _sample_records(samples[0]) if samples else []
            if rows:
                by_task.setdefault(_task_of(name), []).extend(rows)
        for task, rows in by_task.items():
            manifest = {
                "task": task, "model": dp.get("model") or config.get("model_args"), "sampler": dp.get("sampler", "?"),
                "params": dp.get("params", {}), "batch_size": dp.get("batch_size", config.get("batch_size")),
                "device": dp.get("device", config.get("device")), "device_info": dp.get("device_info", {}),
                "versions": {"dpbench": dp.get("dpbench_version"), "lm_eval": results.get("lm_eval_version")},
                "git_commit": dp.get("git_commit"), "source": f"lm-eval {res_file}",
            }
            label = path.name if len(files) == 1 and len(by_task) == 1 else f"{path.name}:{task}@{stamp}"
            runs.append(Run(label, path, manifest, pd.DataFrame(rows)))
    return runs


def _sample_records(path: Path) -> list[dict[str, Any]]:
    """One record per document from an lm-eval samples file (the first filter logged for it)."""
    from ..records import read_records

    seen, rows = set(), []
    for s in read_records(path):
        fig = s.get("dpbench")
        if not fig or s.get("doc_id") in seen:
            continue  # lm-eval logs one line per (document, filter)
        seen.add(s.get("doc_id"))
        metric = next((s[m] for m in ("exact_match", "acc", "pass@1") if m in s), None)
        resp = s.get("filtered_resps") or s.get("resps") or [""]
        while isinstance(resp, list) and resp:
            resp = resp[0]
        rows.append({"doc_id": str(s.get("doc_id")), "correct": bool(metric), **fig,
                     "completion": fig.get("completion", resp if isinstance(resp, str) else "")})
    return rows


__all__ = ["Run", "find_runs", "lmeval_results_files", "load_run", "load_runs"]
