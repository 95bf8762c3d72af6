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

import math
from pathlib import Path

import pandas as pd

from .sources import load_run  # noqa: F401  (re-exported: dpbench.report.table.load_run)

Z95 = 1.959963984540054
# Block params shown as their own columns; every other sampler param goes in `params` when not its default.
_BLOCK_KEYS = ("gen_length", "block_length")
_ALWAYS = ("steps", "threshold")  # the setting that defines a point on a curve: shown even at its default
# Used only for a sampler this install does not have (a run made elsewhere): the common params' defaults.
_FALLBACK_DEFAULTS = {"remasking": "low_confidence", "temperature": 0.0, "early_stop": False, "cache": "none",
                      "dual_lookahead": 0, "cuda_graph": False, "step_kernel": True}
BOOTSTRAP = 1000  # resamples for the wall-clock speedup interval


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (nan, nan for n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _defaults(sampler: str | None) -> dict:
    try:
        from ..samplers.registry import sampler_params

        return sampler_params(sampler) if sampler else dict(_FALLBACK_DEFAULTS)
    except ValueError:  # not registered here
        return dict(_FALLBACK_DEFAULTS)


def key_params(params: dict, sampler: str | None = None) -> str:
    """``steps=64`` / ``threshold=0.5``, then every other parameter that differs from the sampler's default
    (``cache=dual``, ``temperature=0.7``, ``step_kernel=False``, ...): two runs that differ in anything
    but gen/block length never look the same."""
    defaults = _defaults(sampler)
    parts = [f"{k}={params[k]}" for k in _ALWAYS if k in params]
    parts += [f"{k}={v}" for k, v in params.items()
              if k not in _ALWAYS and k not in _BLOCK_KEYS and (k not in defaults or defaults[k] != v)]
    return " ".join(parts)


def run_labels(run_dirs: list[Path]) -> list[str]:
    names = [p.name for p in run_dirs]
    return names if len(set(names)) == len(names) else [str(p) for p in run_dirs]


def _runs(run_dirs) -> tuple[list, list[str]]:
    """Run objects from paths (non-runs skipped with a note) or already-loaded `sources.Run` objects."""
    from .sources import Run, load_runs

    items = list(run_dirs)
    if items and all(isinstance(r, Run) for r in items):
        return items, []
    return load_runs(items)


def load_records(run_dirs) -> pd.DataFrame:
    """Every record of every run, with ``run``, ``task``, ``model``, ``sampler`` and ``params`` columns."""
    runs, _ = _runs(run_dirs)
    frames = []
    for r in runs:
        m = r.manifest
        frames.append(r.records.assign(run=r.label, task=m["task"], model=m["model"], sampler=m["sampler"],
                                       params=key_params(m["params"], m["sampler"]),
                                       **{k: m["params"].get(k) for k in _BLOCK_KEYS}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _col(df: pd.DataFrame, name: str) -> pd.Series | None:
    """A numeric record column present (and filled) in every record, else None."""
    if name not in df or df[name].isna().any():
        return None
    return df[name].astype(float)


def summarize(run_dirs, baseline: str | None = None) -> pd.DataFrame:
    """One row per run. ``baseline`` (a run label) forces the speedup reference for every run.

    Paths that are not runs are skipped; their one-line notes are in ``table.attrs["notes"]``.
    """
    runs, notes = _runs(run_dirs)
    rows = []
    for r in runs:
        m, df = r.manifest, r.records
        n = len(df)
        k = int(df["correct"].sum()) if n else 0
        lo, hi = wilson_interval(k, n)
        secs = df["seconds"].astype(float) if n else pd.Series(dtype=float)
        nfe_sum = float(df["nfe"].sum()) if n else 0.0
        lb = _col(df, "lb_tokens") if n else None
        rows.append({
            "run": r.label, "task": m["task"], "model": m["model"], "sampler": m["sampler"],
            "params": key_params(m["params"], m["sampler"]), **{key: m["params"].get(key) for key in _BLOCK_KEYS},
            "steps": m["params"].get("steps"), "n": n, "correct": k,
            "accuracy": k / n if n else float("nan"), "acc_low": lo, "acc_high": hi,
            "nfe_mean": df["nfe"].mean() if n else float("nan"),
            "nfe_median": df["nfe"].median() if n else float("nan"),
            "gen_tokens_mean": df["gen_tokens"].mean() if n else float("nan"),
            "tpf": df["gen_tokens"].sum() / nfe_sum if nfe_sum else float("nan"),
            "tpf_lb": lb.sum() / nfe_sum if lb is not None and nfe_sum else float("nan"),
            "latency_mean": secs.mean(), "latency_p5": secs.quantile(0.05), "latency_p50": secs.quantile(0.5),
            "latency_p95": secs.quantile(0.95),
            "tokens_per_s": df["gen_tokens"].sum() / secs.sum() if n and secs.sum() > 0 else float("nan"),
            "batch_size": m.get("batch_size"), "device": m.get("device"),
        })
    table = pd.DataFrame(rows)
    table.attrs["notes"] = notes
    table.attrs["manifests"] = [r.manifest for r in runs]
    if table.empty:
        return table
    refs = [_reference(table, i, baseline) for i in range(len(table))]
    table["baseline"] = [table.at[r, "run"] if r is not None else None for r in refs]
    table["speedup_nfe"] = [table.at[r, "nfe_mean"] / table.at[i, "nfe_mean"] if r is not None else float("nan")
                            for i, r in enumerate(refs)]
    table["speedup_time"] = [table.at[r, "latency_mean"] / table.at[i, "latency_mean"] if r is not None else float("nan")
                             for i, r in enumerate(refs)]
    spread = [(1.0, 1.0) if r == i else _ratio_interval(runs[r].records, runs[i].records) if r is not None
              else (float("nan"),) * 2 for i, r in enumerate(refs)]
    table["speedup_time_p5"] = [s[0] for s in spread]
    table["speedup_time_p95"] = [s[1] for s in spread]
    return table.drop(columns="steps")


def _ratio_interval(base: pd.DataFrame, run: pd.DataFrame, reps: int = BOOTSTRAP) -> tuple[float, float]:
    """5th and 95th percentile of the wall-clock speedup (baseline mean / run mean seconds) over bootstrap
    resamples of both runs' samples (seeded: the same records give the same interval). It shows how much the
    ratio depends on which samples were timed; it does not include run-to-run noise of the machine."""
    import numpy as np

    a, b = base["seconds"].to_numpy(float), run["seconds"].to_numpy(float)
    if not len(a) or not len(b):
        return float("nan"), float("nan")
    rng = np.random.default_rng(0)
    ra = a[rng.integers(0, len(a), (reps, len(a)))].mean(1)
    rb = b[rng.integers(0, len(b), (reps, len(b)))].mean(1)
    ratio = ra / np.where(rb > 0, rb, np.nan)
    return float(np.nanpercentile(ratio, 5)), float(np.nanpercentile(ratio, 95))


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


def _x(x: float) -> str:
    return _num(x, ".2f") + ("x" if x == x and x is not None else "")


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable strings: accuracy in %, latency in ms, speedups as 8.5x."""
    lb = table.get("tpf_lb", pd.Series([float("nan")] * len(table)))
    p5 = table.get("latency_p5", table["latency_p50"])
    lo = table.get("speedup_time_p5", pd.Series([float("nan")] * len(table)))
    hi = table.get("speedup_time_p95", pd.Series([float("nan")] * len(table)))
    return pd.DataFrame({
        "run": table["run"], "model": table["model"], "sampler": table["sampler"], "params": table["params"],
        "gen/block": [f"{g}/{b}" for g, b in zip(table["gen_length"], table["block_length"])],
        "n": table["n"],
        "accuracy % [95% CI]": [f"{_pct(a)} [{_pct(lo_)}, {_pct(hi_)}]"
                                for a, lo_, hi_ in zip(table["accuracy"], table["acc_low"], table["acc_high"])],
        "NFE mean": table["nfe_mean"].map(lambda x: _num(x, ".2f")),
        "NFE median": table["nfe_median"].map(lambda x: _num(x, ".1f")),
        "tokens/forward": table["tpf"].map(lambda x: _num(x, ".2f")),
        "TPF (leaderboard)": lb.map(lambda x: _num(x, ".2f")),
        "latency ms mean (p5-p95)": [f"{_num(1e3 * a, '.1f')} ({_num(1e3 * b, '.1f')}-{_num(1e3 * c, '.1f')})"
                                     for a, b, c in zip(table["latency_mean"], p5, table["latency_p95"])],
        "tokens/s": table["tokens_per_s"].map(lambda x: _num(x, ".0f")),
        "batch": table["batch_size"].map(lambda x: "" if x is None or x != x else str(int(x))),
        "speedup NFE": table["speedup_nfe"].map(_x),
        "speedup time (p5-p95)": [_x(v) + (f" ({_num(a, '.2f')}-{_num(b, '.2f')})" if a == a else "")
                                  for v, a, b in zip(table["speedup_time"], lo, hi)],
        "vs": table["baseline"].fillna(""),
    })


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of strings (no tabulate needed)."""
    f = frame.astype(str)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(f.columns) + " |", "|" + "|".join("---" for _ in f.columns) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in f.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``format_table(table)``."""
    return markdown(format_table(table))


NOTES = (
    "Accuracy with a 95% Wilson interval. NFE = forward passes per sample. Tokens/forward = answer tokens "
    "before the first EOS / NFE (EOS padding not counted); TPF (leaderboard) = non-EOS tokens before the task's "
    "stop strings / NFE, as the d3LLM AUP leaderboard counts them. Latency = the batch wall-clock split over its "
    "samples by NFE (warm-up excluded), at the batch size shown. Speedups are against the run named in `vs`; the "
    "wall-clock speedup's p5-p95 is over bootstrap resamples of the timed samples (machine noise between runs is "
    "not in it). AUP: accuracy under parallelism over each (model, sampler) curve (docs/runs.md#aup)."
)


def write_report(run_dirs, out: str | Path, baseline: str | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Write ``report.csv`` (full precision), ``aup.csv`` and ``report.md`` (formatted, AUP included) into ``out``."""
    from .scoreboard import aup_table, format_aup

    table = summarize(run_dirs, baseline=baseline)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, md, aup_csv = out / "report.csv", out / "report.md", out / "aup.csv"
    table.to_csv(csv, index=False)
    scores = aup_table(table)
    scores.to_csv(aup_csv, index=False)
    text = "# dpbench report\n\n" + to_markdown(table) + "\n" + NOTES + "\n"
    text += "\n## AUP per (task, model, sampler)\n\n" + markdown(format_aup(scores))
    if table.attrs.get("notes"):
        text += "\n" + "\n".join(f"- {n}" for n in table.attrs["notes"]) + "\n"
    md.write_text(text)
    return table, [csv, aup_csv, md]


def paper_beside(table: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """The dParallel paper's rows for the tasks in ``table`` only (empty when the paper has none of them).

    Measured rows come from ``table``; the paper's keep their own columns: steps
    (mean NFE), latency on the authors' GPU, speedup and accuracy.
    """
    from ..data import paper_results

    paper = paper_results(model)
    tasks = set(table["task"]) if "task" in table else set()
    return paper[paper["task"].isin(tasks)].reset_index(drop=True)
