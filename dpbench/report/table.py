"""Run directories -> one pandas table: accuracy, NFE, tokens per forward, latency, speedup.

Column definitions (also in docs/runs.md):

- ``accuracy``: mean of ``correct``; ``acc_low``/``acc_high``: 95% Wilson score
  interval (well behaved near 0% and 100% and for small n, unlike p +- 1.96 se).
- ``nfe_mean``/``nfe_median``: forward passes per sample.
- ``tpf`` (tokens per forward): ``sum(gen_tokens) / sum(nfe)``, where
  ``gen_tokens`` counts answer tokens before the first EOS. EOS padding is not
  counted, so TPF is lower than ``gen_length / NFE``.
- ``latency_mean``/``latency_p50``/``latency_p95``: per-sample seconds as the
  runner recorded them (batch wall-clock split by NFE), percentiles with linear
  interpolation.
- ``tokens_per_s``: ``sum(gen_tokens) / sum(seconds)``.
- ``speedup_nfe`` = baseline ``nfe_mean`` / run ``nfe_mean``; ``speedup_time`` =
  baseline ``latency_mean`` / run ``latency_mean``. The baseline is the
  ``baseline`` run of the same task and model with the most steps (ties: the
  first given); a model without one (e.g. a distilled student) is compared with
  the same task's baseline on another model, and the ``baseline`` column names it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

Z95 = 1.959963984540054
# Block params shown as their own columns; the rest of a sampler's params go in `params` when not default.
_BLOCK_KEYS = ("gen_length", "block_length")
_SHOWN = ("steps", "threshold", "remasking", "temperature", "early_stop")
_DEFAULTS = {"remasking": "low_confidence", "temperature": 0.0, "early_stop": False}


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (nan, nan for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def load_run(run_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """``(manifest, records)`` of one run directory."""
    from ..records import MANIFEST, SAMPLES, read_samples

    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).is_file():
        raise ValueError(f"{run_dir} is not a run directory: it has no {MANIFEST}")
    manifest = json.loads((run_dir / MANIFEST).read_text())
    return manifest, pd.DataFrame(read_samples(run_dir / SAMPLES))  # a repeated doc_id or non-record line: an error


def key_params(params: dict) -> str:
    """``steps=64`` / ``threshold=0.5`` (+ any non-default remasking, temperature, early_stop)."""
    parts = [f"{k}={params[k]}" for k in _SHOWN if k in params and params[k] != _DEFAULTS.get(k, object())]
    return " ".join(parts)


def run_labels(run_dirs: list[Path]) -> list[str]:
    names = [p.name for p in run_dirs]
    return names if len(set(names)) == len(names) else [str(p) for p in run_dirs]


def load_records(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Every record of every run, with ``run``, ``task``, ``model``, ``sampler`` and ``params`` columns."""
    dirs = [Path(d) for d in run_dirs]
    frames = []
    for label, d in zip(run_labels(dirs), dirs):
        m, df = load_run(d)
        df = df.assign(run=label, task=m["task"], model=m["model"], sampler=m["sampler"],
                       params=key_params(m["params"]), **{k: m["params"].get(k) for k in _BLOCK_KEYS})
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize(run_dirs: list[str | Path], baseline: str | None = None) -> pd.DataFrame:
    """One row per run. ``baseline`` (a run label) forces the speedup reference for every run."""
    dirs = [Path(d) for d in run_dirs]
    rows = []
    for label, d in zip(run_labels(dirs), dirs):
        m, df = load_run(d)
        n = len(df)
        k = int(df["correct"].sum()) if n else 0
        lo, hi = wilson_interval(k, n)
        secs = df["seconds"] if n else pd.Series(dtype=float)
        rows.append({
            "run": label, "task": m["task"], "model": m["model"], "sampler": m["sampler"],
            "params": key_params(m["params"]), **{key: m["params"].get(key) for key in _BLOCK_KEYS},
            "steps": m["params"].get("steps"), "n": n, "correct": k,
            "accuracy": k / n if n else float("nan"), "acc_low": lo, "acc_high": hi,
            "nfe_mean": df["nfe"].mean() if n else float("nan"),
            "nfe_median": df["nfe"].median() if n else float("nan"),
            "gen_tokens_mean": df["gen_tokens"].mean() if n else float("nan"),
            "tpf": df["gen_tokens"].sum() / df["nfe"].sum() if n and df["nfe"].sum() else float("nan"),
            "latency_mean": secs.mean(), "latency_p50": secs.quantile(0.5), "latency_p95": secs.quantile(0.95),
            "tokens_per_s": df["gen_tokens"].sum() / secs.sum() if n and secs.sum() > 0 else float("nan"),
            "batch_size": m.get("batch_size"), "device": m.get("device"),
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    refs = [_reference(table, i, baseline) for i in range(len(table))]
    table["baseline"] = [table.at[r, "run"] if r is not None else None for r in refs]
    table["speedup_nfe"] = [table.at[r, "nfe_mean"] / table.at[i, "nfe_mean"] if r is not None else float("nan")
                            for i, r in enumerate(refs)]
    table["speedup_time"] = [table.at[r, "latency_mean"] / table.at[i, "latency_mean"] if r is not None else float("nan")
                             for i, r in enumerate(refs)]
    return table.drop(columns="steps")


def _reference(table: pd.DataFrame, i: int, forced: str | None) -> int | None:
    if forced is not None:
        hits = table.index[table["run"] == forced]
        if not len(hits):
            raise ValueError(f"baseline run {forced!r} is not among the runs: {', '.join(table['run'])}")
        return int(hits[0])
    row = table.iloc[i]
    base = table[(table["sampler"] == "baseline") & (table["task"] == row["task"])]
    same_model = base[base["model"] == row["model"]]
    pool = same_model if len(same_model) else base
    if not len(pool):
        return None
    # The most steps = the slowest, reference setting (a few-step baseline is a contender, not the reference).
    return int(pool["steps"].fillna(0).astype(float).idxmax())


def _pct(x: float) -> str:
    return "" if x != x else f"{100 * x:.1f}"


def _num(x, fmt: str) -> str:
    return "" if x is None or x != x else format(x, fmt)


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable strings: accuracy in %, latency in ms, speedups as 8.5x."""
    return pd.DataFrame({
        "run": table["run"], "model": table["model"], "sampler": table["sampler"], "params": table["params"],
        "gen/block": [f"{g}/{b}" for g, b in zip(table["gen_length"], table["block_length"])],
        "n": table["n"],
        "accuracy % [95% CI]": [f"{_pct(a)} [{_pct(lo)}, {_pct(hi)}]"
                                for a, lo, hi in zip(table["accuracy"], table["acc_low"], table["acc_high"])],
        "NFE mean": table["nfe_mean"].map(lambda x: _num(x, ".2f")),
        "NFE median": table["nfe_median"].map(lambda x: _num(x, ".1f")),
        "tokens/forward": table["tpf"].map(lambda x: _num(x, ".2f")),
        "latency ms mean/p50/p95": [f"{_num(1e3 * a, '.1f')}/{_num(1e3 * b, '.1f')}/{_num(1e3 * c, '.1f')}"
                                    for a, b, c in zip(table["latency_mean"], table["latency_p50"], table["latency_p95"])],
        "tokens/s": table["tokens_per_s"].map(lambda x: _num(x, ".0f")),
        "speedup NFE": table["speedup_nfe"].map(lambda x: _num(x, ".2f") + ("x" if x == x else "")),
        "speedup time": table["speedup_time"].map(lambda x: _num(x, ".2f") + ("x" if x == x else "")),
        "vs": table["baseline"].fillna(""),
    })


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``format_table(table)`` (no tabulate needed)."""
    f = format_table(table).astype(str)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(f.columns) + " |", "|" + "|".join("---" for _ in f.columns) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in f.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_report(run_dirs: list[str | Path], out: str | Path, baseline: str | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Write ``report.csv`` (full precision) and ``report.md`` (formatted) into ``out``."""
    table = summarize(run_dirs, baseline=baseline)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / "report.csv", out / "report.md"
    table.to_csv(csv, index=False)
    notes = (
        "\nAccuracy with a 95% Wilson interval. NFE = forward passes per sample. Tokens/forward = answer tokens "
        "before the first EOS / NFE (EOS padding not counted). Latency = the batch wall-clock split over its "
        "samples by NFE (warm-up excluded). Speedups are against the run named in `vs`.\n"
    )
    md.write_text("# dpbench report\n\n" + to_markdown(table) + notes)
    return table, [csv, md]


def paper_beside(table: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """The dParallel paper's rows for the tasks in ``table`` (all its rows if none match), for side-by-side reading.

    Measured rows come from ``table``; the paper's keep their own columns: steps
    (mean NFE), latency on the authors' GPU, speedup and accuracy.
    """
    from ..data import paper_results

    paper = paper_results(model)
    tasks = set(table["task"]) if "task" in table else set()
    matched = paper[paper["task"].isin(tasks)]
    return (matched if not matched.empty else paper).reset_index(drop=True)
