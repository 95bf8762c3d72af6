"""Charts from run directories: speedup, accuracy vs NFE, NFE histograms, certainty convergence.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot,
no global backend switch, no display needed) and saved as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .table import run_labels, load_records, summarize

FORMATS = ("png", "svg")


def _figure(w: float, h: float, **kw) -> Figure:
    fig = Figure(figsize=(w, h), **kw)
    FigureCanvasAgg(fig)
    return fig


def _label(row) -> str:
    return f"{row['run']}\n{row['sampler']} {row['params']}".strip()


def speedup_chart(table: pd.DataFrame) -> Figure:
    """Two bar panels (NFE speedup, wall-clock speedup) with accuracy written on each bar."""
    fig = _figure(max(6.0, 1.6 * len(table) + 2), 4.2, layout="constrained")
    axes = fig.subplots(1, 2, sharey=False)
    labels = list(table["run"])
    x = np.arange(len(table))
    for ax, col, title in zip(axes, ("speedup_nfe", "speedup_time"), ("Speedup in NFE", "Speedup in wall-clock")):
        vals = table[col].fillna(0).to_numpy(float)
        bars = ax.bar(x, vals, color=[f"C{i}" for i in range(len(table))])
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        for b, v, acc, nfe in zip(bars, vals, table["accuracy"], table["nfe_mean"]):
            text = f"{v:.2f}x\nacc {100 * acc:.1f}%" if col == "speedup_time" else f"{v:.2f}x\nNFE {nfe:.1f}\nacc {100 * acc:.1f}%"
            ax.annotate(text, (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, labels, fontsize=7, rotation=20 if max(map(len, labels)) > 12 else 0, ha="right" if max(map(len, labels)) > 12 else "center")
        ax.set_title(title)
        ax.set_ylabel("x faster than baseline")
        ax.set_ylim(0, max(1.0, float(vals.max())) * 1.35)
    base = ", ".join(sorted(set(table["baseline"].dropna())))
    fig.suptitle(f"{', '.join(sorted(set(table['task'])))}: speedup vs {base or 'no baseline run'}", fontsize=10)
    return fig


def tradeoff_chart(table: pd.DataFrame) -> Figure:
    """Accuracy (95% Wilson interval) against mean NFE: up and to the left is better."""
    fig = _figure(6.0, 4.2, layout="constrained")
    ax = fig.subplots()
    for i, (_, r) in enumerate(table.iterrows()):
        acc = 100 * r["accuracy"]
        err = [[acc - 100 * r["acc_low"]], [100 * r["acc_high"] - acc]]
        ax.errorbar([r["nfe_mean"]], [acc], yerr=err, fmt="o", color=f"C{i}", capsize=3, label=_label(r).replace("\n", ": "))
        ax.annotate(r["run"], (r["nfe_mean"], acc), xytext=(5, 4), textcoords="offset points", fontsize=7)
    ax.set_xlabel("mean NFE (forward passes per sample)")
    ax.set_ylabel("accuracy % (95% Wilson interval)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Accuracy vs decoding steps", fontsize=10)
    return fig


def nfe_hist_chart(records: pd.DataFrame) -> Figure:
    """One NFE histogram per run, on a shared integer axis."""
    runs = list(dict.fromkeys(records["run"]))
    fig = _figure(6.5, 1.2 + 1.3 * len(runs), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(runs), 1, sharex=True))
    hi = int(records["nfe"].max()) if len(records) else 1
    bins = np.arange(0.5, hi + 1.5, max(1, (hi + 59) // 60))
    for i, (ax, run) in enumerate(zip(axes, runs)):
        df = records[records["run"] == run]
        ax.hist(df["nfe"], bins=bins, color=f"C{i}")
        ax.axvline(df["nfe"].mean(), color="k", lw=0.8, ls="--")
        ax.set_ylabel("samples", fontsize=8)
        ax.set_title(f"{run} ({df['sampler'].iloc[0]} {df['params'].iloc[0]}): mean {df['nfe'].mean():.1f}",
                     fontsize=8, loc="left")
    axes[-1].set_xlabel("NFE per sample")
    return fig


def convergence_chart(traces: dict[str, dict], block_length: int | None = None) -> Figure:
    """Certainty convergence: for one sample per run, the step at which each answer position was committed.

    x = forward pass that committed the position, y = answer position (top =
    first), colour = probability of the committed token then. Answer tokens are
    squares labelled with their text; EOS padding is drawn faint.
    """
    items = list(traces.items())
    height = max(4.0, 0.09 * max(len(t["step"]) for _, t in items) + 1.5)
    fig = _figure(3.4 * len(items) + 1.0, height, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(items), sharey=True))
    for ax, (run, t) in zip(axes, items):
        step = np.asarray(t["step"], float)
        conf = np.asarray([np.nan if c is None else c for c in t["confidence"]], float)
        pos = np.arange(len(step))
        answer = pos < t["gen_tokens"]
        done = step > 0
        for sel, alpha, size in ((answer & done, 1.0, 28), (~answer & done, 0.25, 10)):
            ax.scatter(step[sel], pos[sel], c=conf[sel], cmap="viridis", vmin=0, vmax=1, marker="s",
                            s=size, alpha=alpha, linewidths=0)
        for p in pos[answer & done]:
            text = t.get("token_text", [""] * len(pos))[p].replace("\n", "\\n")
            ax.annotate(text, (step[p], p), xytext=(4, 0), textcoords="offset points", fontsize=5, va="center")
        if block_length:
            for b in range(block_length, len(pos), block_length):
                ax.axhline(b - 0.5, color="0.6", lw=0.6, ls=":")
        ax.set_title(f"{run}\nNFE {t['nfe']}, {'correct' if t.get('correct') else 'wrong'}", fontsize=8)
        ax.set_xlabel("commit step (forward pass)")
        ax.set_xlim(0, max(2, step.max() + 2))
    axes[0].set_ylabel("answer position")
    axes[0].invert_yaxis()
    mappable = ScalarMappable(Normalize(0, 1), cmap="viridis")  # opaque, whatever alpha the points had
    fig.colorbar(mappable, ax=list(axes), label="confidence of committed token", shrink=0.8)
    fig.suptitle(f"Certainty convergence, sample {items[0][1]['doc_id']}", fontsize=10)
    return fig


def pick_traces(run_dirs: list[Path]) -> dict[str, dict]:
    """The trace of one sample per run: the first doc_id traced in every run that has traces."""
    from ..records import read_trace

    per_run = {label: {t["doc_id"]: t for t in read_trace(d)} for label, d in zip(run_labels(run_dirs), run_dirs)}
    per_run = {k: v for k, v in per_run.items() if v}
    if not per_run:
        return {}
    first = next(iter(per_run.values()))
    common = [doc for doc in first if all(doc in v for v in per_run.values())]
    if common:
        return {label: v[common[0]] for label, v in per_run.items()}
    return {label: next(iter(v.values())) for label, v in per_run.items()}


def save(fig: Figure, out: Path, name: str, formats=FORMATS) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=130)
        paths.append(path)
    return paths


def plot_runs(run_dirs: list[str | Path], out: str | Path, baseline: str | None = None,
              formats=FORMATS) -> list[Path]:
    """Write speedup, tradeoff, nfe_hist and (when traces exist) convergence charts into ``out``."""
    dirs = [Path(d) for d in run_dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(dirs, baseline=baseline)
    records = load_records(dirs)
    paths = save(speedup_chart(table), out, "speedup", formats)
    paths += save(tradeoff_chart(table), out, "tradeoff", formats)
    paths += save(nfe_hist_chart(records), out, "nfe_hist", formats)
    traces = pick_traces(dirs)
    if traces:
        block = int(table["block_length"].dropna().iloc[0]) if table["block_length"].notna().any() else None
        paths += save(convergence_chart(traces, block), out, "convergence", formats)
    return paths
