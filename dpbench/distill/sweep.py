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
    """``["threshold=0.1,0.2", "confidence:threshold=0.8,0.9"]`` -> ``{"threshold": [...], "confidence:threshold": [...]}``.

    A key ``SAMPLER:param`` applies to that sampler only; a plain key to every swept sampler.
    """
    grid: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, sep, values = pair.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ValueError(f"expected key=v1,v2,... or sampler:key=v1,v2,..., got {pair!r}")
        grid[key.strip()] = vals
    return grid


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] or [{}]


def grid_for(grid: dict[str, list[Any]], sampler: str, samplers: list[str]) -> dict[str, list[Any]]:
    """The part of ``grid`` that applies to ``sampler``: its scoped keys and every plain key."""
    out = {}
    for key, vals in grid.items():
        scope, colon, name = key.rpartition(":")
        if not colon:
            out[key] = vals
        elif scope == sampler:
            out[name] = vals
        elif scope not in samplers:
            raise ValueError(f"grid key {key!r} names sampler {scope!r}, which is not swept (swept: {', '.join(samplers)})")
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _samplers(sampler) -> list[str]:
    names = [s.strip() for s in (sampler.split(",") if isinstance(sampler, str) else sampler) if s.strip()]
    if not names:
        raise ValueError("give at least one sampler to sweep")
    return names


def plan_sweep(task: str, models: list[str], sampler, grid: dict[str, list[Any]], out: Path) -> list[tuple]:
    """``(spec, sampler, params, run_dir)`` for every run of the sweep, baselines first per model."""
    specs = [ModelSpec.parse(m) for m in models]
    samplers = _samplers(sampler)
    points = [(smp, p) for smp in samplers for p in expand_grid(grid_for(grid, smp, samplers))]
    plan = []
    for spec in specs:
        for smp, params in [("baseline", {})] + points:
            tag = "-".join(f"{k}{v}" for k, v in params.items())
            run_dir = out / "runs" / "-".join(x for x in (_slug(spec.label), smp, _slug(tag) if tag else "") if x)
            plan.append((spec, smp, dict(params), run_dir))
    return plan


def check_sweep(task: str, models: list[str], sampler, grid: dict[str, list[Any]], *, limit, batch_size: int,
                split: str, out: Path) -> list[tuple]:
    """Every model, the task's documents, and the sampler at every grid point, checked before anything runs;
    all problems in one `dpbench.preflight.PreflightError`. Returns the plan."""
    from ..preflight import Problems, check_positive, check_sampler, check_task

    p = Problems()
    check_positive(p, batch_size=batch_size)
    plan = p.check("", plan_sweep, task, models, sampler, grid, out) or []
    specs = list(dict.fromkeys(spec for spec, *_ in plan))
    if len({s.label for s in specs}) != len(specs):
        p.add(f"model labels must differ, got {[s.label for s in specs]}; name them LABEL=PATH")
    for spec in specs:
        p.check(f"model {spec.label}={spec.source}" if spec.label != spec.source else f"model {spec.source}",
                _check_model, spec.source)
    t = check_task(p, task, split=split, limit=limit)
    seen = set()
    for _, smp, params, _ in plan:
        if (smp, tuple(params.items())) in seen:
            continue
        seen.add((smp, tuple(params.items())))
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        check_sampler(p, smp, params, t, what=f"{smp} {shown}".strip())
    p.raise_if_any("dpbench sweep")
    return plan


def _check_model(source: str) -> None:
    from ..preflight import check_model

    check_model(source)


def run_sweep(
    task: str,
    models: list[str],
    sampler,
    grid: dict[str, list[Any]],
    *,
    out: str | Path = "results/sweep",
    limit: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    split: str = "test",
    progress: bool = True,
    estimate: bool = False,
    log=print,
) -> pd.DataFrame:
    """Run ``baseline`` and each swept sampler at every grid point for each model; one row per run.

    ``sampler`` is one name or several (comma-separated or a list); grid keys ``SAMPLER:param``
    apply to one sampler. Every argument is checked first (`check_sweep`); with ``estimate``
    a probe batch per run gives the expected duration before the sweep starts (`dpbench.estimate`).
    ``speedup`` is the NFE speedup over the first model's baseline run; ``df.attrs["aup"]`` is the
    AUP table per (model, decoder) (also written as ``aup.csv``).
    """
    from ..records import SAMPLES, read_records
    from ..report import summarize
    from ..report.scoreboard import aup_table
    from ..runner import RunConfig, run

    out = Path(out)
    plan = check_sweep(task, models, sampler, grid, limit=limit, batch_size=batch_size, split=split, out=out)
    n_docs = _n_docs(task, split, limit)
    specs = list(dict.fromkeys(spec for spec, *_ in plan))
    log(f"sweep {task} ({split}): {len(specs)} model(s) x {len(plan) // max(len(specs), 1)} runs "
        f"(baseline + {', '.join(_samplers(sampler))} over the grid) = {len(plan)} runs x {n_docs} problems, into {out}/runs")
    if estimate:
        from ..estimate import PlannedRun, estimate_runs, fmt_seconds

        todo = [PlannedRun(d.name, spec.source, smp, params, task, n_docs - len(read_records(d / SAMPLES)), batch_size, split)
                for spec, smp, params, d in plan]
        log("estimate (probe of up to 8 problems per run):")
        log(f"estimate: about {fmt_seconds(estimate_runs(todo, device=device, log=log))} in all")
    dirs, meta = [], []
    for spec, smp, params, run_dir in plan:
        run(RunConfig(task=task, model=spec.source, sampler=smp, params=dict(params), out=str(run_dir),
                      limit=limit, batch_size=batch_size, device=device, split=split, progress=progress))
        dirs.append(run_dir)
        meta.append({"model": spec.label, "source": spec.source, **{k: str(v) for k, v in params.items()}})
    reference = dirs[0].name  # the first model's baseline
    table = summarize(dirs, baseline=reference)
    df = pd.concat([pd.DataFrame(meta), table.drop(columns=["model"])], axis=1)
    df["speedup"] = df["speedup_nfe"]
    df["run_dir"] = [str(d) for d in dirs]
    scores = aup_table(table.assign(model=df["model"]))
    df.attrs.update(aup=scores, manifests=table.attrs.get("manifests", []))
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "sweep.csv", index=False)
    scores.to_csv(out / "aup.csv", index=False)
    return df


def _n_docs(task: str, split: str, limit: int | None) -> int:
    from ..tasks import get_task

    return len(get_task(task).docs(split, limit))


def plot_tradeoff(df: pd.DataFrame, path: str | Path, *, sampler: str | None = None, title: str | None = None,
                  keys: list[str] | None = None) -> Path:
    """Left: accuracy vs NFE speedup, a solid line per (model, swept sampler), each model's baseline dashed,
    every point labelled with its grid value (labels placed so they never collide). Right: accuracy vs
    tokens per forward per curve, AUP in the legend. A caption line says model, hardware, batch, n, version."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..report.caption import add_caption, caption_text
    from ..report.labels import place_labels
    from ..report.scoreboard import _points, aup_table, decoder_label

    swept = df[df["sampler"] != "baseline"]
    samplers = [sampler] if sampler and "," not in sampler else list(dict.fromkeys(swept["sampler"])) or ["baseline"]
    keys = keys if keys is not None else [c for c in ("threshold", "steps", "gamma") if c in df.columns]
    fig = Figure(figsize=(12.0, 6.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2)
    curves = [(label, smp, g[g["sampler"] == smp]) for label, g in df.groupby("model", sort=False) for smp in samplers]
    colour = {key: f"C{i}" for i, key in enumerate((c[0], c[1]) for c in curves)}
    labels = []
    for label, smp, pts in curves:
        c = colour[(label, smp)]
        pts = pts.sort_values("speedup")
        ax.plot(pts["speedup"], 100 * pts["accuracy"], "-o", color=c, ms=5, label=f"{label} + {smp}")
        for _, r in pts.iterrows():
            note = ",".join(f"{r[k]}" for k in keys if k in r and pd.notna(r[k]))
            labels.append((r["speedup"], 100 * r["accuracy"], note, c))
    for i, (label, g) in enumerate(df.groupby("model", sort=False)):
        base = g[g["sampler"] == "baseline"]
        if len(base):  # baselines in greys with their own dashes: they are references, not curves
            b = base.iloc[0]
            c, ls = ("0.15", "0.55", "0.35", "0.7")[i % 4], ("--", ":", "-.", (0, (5, 1)))[i % 4]
            ax.axhline(100 * b["accuracy"], color=c, linestyle=ls, linewidth=1.2,
                       label=f"{label} + baseline ({b['nfe_mean']:.0f} NFE, {100 * b['accuracy']:.1f}%)")
            ax.plot([b["speedup"]], [100 * b["accuracy"]], "s", color=c)
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel("speedup in NFE over the first model's baseline (x)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy vs speedup", fontsize=10)
    ax.grid(alpha=0.3)
    # Legends under the panels: inside they covered the fastest (lowest) points.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.canvas.draw()  # fixes the limits, so labels are measured where they will be drawn
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    place_labels(ax, labels)
    if keys:
        ax.text(0.99, 0.99, f"point labels: {', '.join(keys)}", transform=ax.transAxes, ha="right", va="top",
                fontsize=7, color="0.35")
    table = df.assign(decoder=[decoder_label(s, p) for s, p in zip(df["sampler"], df["params"])])
    scores = aup_table(table)
    dropped_any = False
    for _, s in scores[scores["decoder"] != "baseline"].iterrows():
        pts = table[table["run"].isin(s["runs"].split())]
        tpf, acc, _ = _points(pts)
        gone = set(s["dropped"].split())
        keep = sorted((x, y) for x, y, r in zip(tpf, acc, pts["run"]) if r not in gone)
        c = colour.get((s["model"], s["decoder"].split()[0]), "0.3")
        ax2.plot([x for x, _ in keep], [y for _, y in keep], "-o", color=c, ms=5,
                 label=f"{s['model']} + {s['decoder']}: AUP {s['aup']:.1f}")
        for x, y, r in zip(tpf, acc, pts["run"]):
            if r in gone:  # not part of the area: more than 5 points below the curve's first point
                ax2.plot([x], [y], "x", color=c, ms=7)
                dropped_any = True
    if dropped_any:
        ax2.plot([], [], "x", color="0.3", label="dropped from AUP (> 5 points below the first point)")
    if len(scores):
        ax2.axhline(scores["y_max"].iloc[0], color="0.5", lw=0.8, ls="--", label=f"y_max {scores['y_max'].iloc[0]:.1f}")
    kinds = ", ".join(sorted(set(scores["tpf_kind"]))) or "dpbench"
    ax2.set_xlabel(f"tokens per forward ({kinds} count)")
    ax2.set_ylabel("accuracy (%)")
    ax2.set_title("accuracy under parallelism (AUP in the legend)", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    manifests = df.attrs.get("manifests") or _manifests(df)
    if manifests:
        add_caption(fig, caption_text(manifests, df["n"]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def _manifests(df: pd.DataFrame) -> list[dict]:
    """The runs' manifests, or what sweep.csv itself says about them when the run directories are gone."""
    import json

    out = []
    for d in df.get("run_dir", []):
        m = Path(d) / "manifest.json"
        if m.is_file():
            out.append(json.loads(m.read_text()))
    if len(out) == len(df):
        return out
    return [{"model": r.get("source", r.get("model")), "task": r.get("task"), "device": r.get("device"),
             "batch_size": r.get("batch_size")} for _, r in df.iterrows()]
