"""`dpbench sweep`: one sampler over a grid of parameters, for one or more models.

Each point is an ordinary run of `dpbench.runner` (its own run directory with
manifest.json and samples.jsonl, resumable), so `dpbench report` reads a sweep
like any other runs. The trade-off chart plots accuracy against speedup in
NFE over the first model's ``baseline`` run, one line per model, each model's
baseline as a dashed line, as in the dParallel paper's trade-off figure.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ModelSpec:
    label: str  # legend and directory name
    source: str  # preset, local directory or hub id

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``LABEL=SOURCE`` or just ``SOURCE`` (label: the preset or directory name)."""
        label, sep, source = text.partition("=")
        if sep and label and source:
            return cls(label, source)
        p = Path(text.rstrip("/"))
        name = p.parent.name if p.name in ("model", "final") and p.parent.name else p.name
        return cls(name or text, text)


def parse_grid(pairs: list[str] | None) -> dict[str, list[str]]:
    """``["threshold=0.1,0.2", "gen_length=64"]`` -> ``{"threshold": ["0.1", "0.2"], "gen_length": ["64"]}``."""
    grid: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, sep, values = pair.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ValueError(f"expected key=v1,v2,..., got {pair!r}")
        grid[key.strip()] = vals
    return grid


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] or [{}]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def run_sweep(
    task: str,
    models: list[str],
    sampler: str,
    grid: dict[str, list[Any]],
    *,
    out: str | Path = "results/sweep",
    limit: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    split: str = "test",
    progress: bool = True,
) -> pd.DataFrame:
    """Run ``baseline`` and ``sampler`` at every grid point for each model; one row per run.

    ``speedup`` is the NFE speedup over the first model's baseline run.
    """
    from ..report import summarize
    from ..runner import RunConfig, run

    specs = [ModelSpec.parse(m) for m in models]
    if len({s.label for s in specs}) != len(specs):
        raise ValueError(f"model labels must differ, got {[s.label for s in specs]}; name them LABEL=PATH")
    out = Path(out)
    dirs, meta = [], []
    for spec in specs:
        for smp, params in [("baseline", {})] + [(sampler, p) for p in expand_grid(grid)]:
            tag = "-".join(f"{k}{v}" for k, v in params.items())
            run_dir = out / "runs" / "-".join(x for x in (_slug(spec.label), smp, _slug(tag) if tag else "") if x)
            run(RunConfig(task=task, model=spec.source, sampler=smp, params=dict(params), out=str(run_dir),
                          limit=limit, batch_size=batch_size, device=device, split=split, progress=progress))
            dirs.append(run_dir)
            meta.append({"model": spec.label, "source": spec.source, **{k: str(v) for k, v in params.items()}})
    reference = dirs[0].name  # the first model's baseline
    table = summarize(dirs, baseline=reference)
    df = pd.concat([pd.DataFrame(meta), table.drop(columns=["model"])], axis=1)
    df["speedup"] = df["speedup_nfe"]
    df["run_dir"] = [str(d) for d in dirs]
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "sweep.csv", index=False)
    return df


def plot_tradeoff(df: pd.DataFrame, path: str | Path, *, sampler: str | None = None, title: str | None = None,
                  keys: list[str] | None = None) -> Path:
    """Accuracy vs NFE speedup: a solid line per model over the swept points, its baseline dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    swept = df[df["sampler"] != "baseline"]
    sampler = sampler or (swept["sampler"].iloc[0] if len(swept) else "baseline")
    keys = keys if keys is not None else [c for c in ("threshold", "steps") if c in df.columns]
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (label, g) in enumerate(df.groupby("model", sort=False)):
        c = f"C{i}"
        pts = g[g["sampler"] == sampler].sort_values("speedup")
        ax.plot(pts["speedup"], 100 * pts["accuracy"], "-o", color=c, label=f"{label} + {sampler}")
        for _, r in pts.iterrows():
            note = ",".join(str(r[k]) for k in keys if k in r and pd.notna(r[k]))
            ax.annotate(note, (r["speedup"], 100 * r["accuracy"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=c)
        base = g[g["sampler"] == "baseline"]
        if len(base):
            b = base.iloc[0]
            ax.axhline(100 * b["accuracy"], color=c, linestyle="--", linewidth=1,
                       label=f"{label} + baseline ({b['nfe_mean']:.0f} NFE)")
            ax.plot([b["speedup"]], [100 * b["accuracy"]], "s", color=c)
    ax.set_xlabel("speedup in NFE over the first model's baseline (x)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy vs speedup", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


