"""Charts from runs: speedup, accuracy vs NFE, NFE distribution, accuracy vs TPF with AUP, certainty convergence.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot,
no global backend switch, no display needed) and saved as PNG and SVG. Every
figure carries a caption line (model, hardware, batch size, n, dpbench version;
`dpbench.report.caption`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .caption import add_caption, caption_text
from .table import load_records, summarize

FORMATS = ("png", "svg")


def _figure(w: float, h: float, **kw) -> Figure:
    fig = Figure(figsize=(w, h), **kw)
    FigureCanvasAgg(fig)
    return fig


def _label(row) -> str:
    return f"{row['run']}: {row['sampler']} {row['params']}".strip()


def _ticks(ax, labels: list[str]) -> None:
    long = max(map(len, labels)) > 12
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=20 if long else 0, ha="right" if long else "center")


def speedup_chart(table: pd.DataFrame, caption: str | None = None) -> Figure:
    """NFE speedup, wall-clock speedup (whiskers: p5-p95 bootstrap) and per-sample latency (p5-p50-p95).

    Runs without a baseline get no speedup bar (never a "0.00x" one); with no baseline
    run at all the first two panels show mean NFE and mean latency instead.
    """
    fig = _figure(max(8.0, 2.3 * len(table) + 3), 4.4, layout="constrained")
    axes = fig.subplots(1, 3)
    labels, x = list(table["run"]), np.arange(len(table))
    colors = [f"C{i}" for i in range(len(table))]
    have = table["baseline"].notna().to_numpy() if "baseline" in table else np.zeros(len(table), bool)
    acc = [f"acc {100 * a:.1f}%" for a in table["accuracy"]]
    if have.any():
        panels = (("speedup_nfe", "NFE speedup vs baseline", "x fewer forward passes"),
                  ("speedup_time", "wall-clock speedup vs baseline", "x less time per sample"))
    else:
        panels = (("nfe_mean", "mean NFE (no baseline run to compare with)", "forward passes per sample"),
                  ("latency_ms", "mean latency (no baseline run to compare with)", "ms per sample"))
        table = table.assign(latency_ms=1e3 * table["latency_mean"])
    for ax, (col, title, ylabel) in zip(axes[:2], panels):
        vals = table[col].to_numpy(float)
        ok = ~np.isnan(vals)
        bars = ax.bar(x[ok], vals[ok], color=[c for c, k in zip(colors, ok) if k])
        tops = vals.copy()
        if col == "speedup_time" and "speedup_time_p5" in table:
            lo, hi = table["speedup_time_p5"].to_numpy(float), table["speedup_time_p95"].to_numpy(float)
            ax.errorbar(x[ok], vals[ok], yerr=[vals[ok] - lo[ok], hi[ok] - vals[ok]], fmt="none", ecolor="0.2", capsize=3,
                        lw=0.8)
            tops = np.fmax(vals, hi)  # labels above the whisker, not across it
        if col.startswith("speedup"):
            ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        for b, i in zip(bars, np.flatnonzero(ok)):
            extra = f"\nNFE {table['nfe_mean'].iloc[i]:.1f}" if col == "speedup_nfe" else ""
            v = vals[i]
            ax.annotate(f"{v:.2f}{'x' if col.startswith('speedup') else ''}{extra}\n{acc[i]}",
                        (b.get_x() + b.get_width() / 2, tops[i]), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
        for i in np.flatnonzero(~ok):
            ax.annotate("no baseline\nfor this run", (i, 0), ha="center", va="bottom", fontsize=7, color="0.4",
                        xytext=(0, 3), textcoords="offset points")
        _ticks(ax, labels)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max(1.0, float(np.nanmax(vals)) if ok.any() else 1.0) * 1.4)
    ax = axes[2]
    mean, p5, p50, p95 = (1e3 * table[c].to_numpy(float) for c in ("latency_mean", "latency_p5", "latency_p50", "latency_p95"))
    ax.vlines(x, p5, p95, colors=colors, lw=6, alpha=0.35, label="p5-p95 of samples")
    ax.scatter(x, p50, color=colors, marker="_", s=300, linewidths=2, label="median")
    ax.scatter(x, mean, color="k", marker="o", s=14, zorder=3, label="mean")
    _ticks(ax, labels)
    ax.set_title("latency per sample", fontsize=9)
    ax.set_ylabel("ms (batch time split by NFE)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper right")
    base = ", ".join(sorted(set(table["baseline"].dropna()))) if "baseline" in table else ""
    fig.suptitle(f"{', '.join(dict.fromkeys(table['task']))}: speed of each run"
                 + (f" against {base}" if base else " (no baseline run)")
                 + "; wall-clock whiskers = p5-p95 over bootstrap resamples of the timed samples", fontsize=9)
    if caption:
        add_caption(fig, caption)
    return fig


def tradeoff_chart(table: pd.DataFrame, caption: str | None = None) -> Figure:
    """Accuracy (95% Wilson interval) against mean NFE: up and to the left is better."""
    fig = _figure(6.4, 4.6, layout="constrained")
    ax = fig.subplots()
    for i, (_, r) in enumerate(table.iterrows()):
        acc = 100 * r["accuracy"]
        err = [[acc - 100 * r["acc_low"]], [100 * r["acc_high"] - acc]]
        ax.errorbar([r["nfe_mean"]], [acc], yerr=err, fmt="o", color=f"C{i}", capsize=3, label=_label(r))
    ax.set_xlabel("mean NFE (forward passes per sample)")
    ax.set_ylabel("accuracy % (95% Wilson interval)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Accuracy vs decoding steps", fontsize=10)
    if caption:
        add_caption(fig, caption, fontsize=6)
    return fig


def nfe_chart(records: pd.DataFrame, caption: str | None = None) -> Figure:
    """The NFE distribution of every run as an ECDF on one integer axis (share of samples with NFE <= x)."""
    fig = _figure(6.8, 4.4, layout="constrained")
    ax = fig.subplots()
    runs = list(dict.fromkeys(records["run"]))
    for i, run in enumerate(runs):
        df = records[records["run"] == run]
        xs = np.sort(df["nfe"].to_numpy(int))
        ys = np.arange(1, len(xs) + 1) / len(xs)
        # One step per distinct NFE value: NFE is an integer, the ECDF jumps only there.
        ax.step(np.concatenate([[xs[0]], xs]), np.concatenate([[0.0], ys]), where="post", color=f"C{i}", lw=1.6,
                label=f"{run} ({df['sampler'].iloc[0]} {df['params'].iloc[0]}): mean {xs.mean():.1f}, "
                      f"median {np.median(xs):.0f}")
    floors = {int(g) // int(b) for g, b in zip(records["gen_length"], records["block_length"]) if g == g and b == b and b}
    for f in sorted(floors):
        ax.axvline(f, color="0.5", lw=0.8, ls=":", label=f"floor: gen_length / block_length = {f}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("NFE per sample (forward passes)")
    ax.set_ylabel("share of samples with NFE <= x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("NFE distribution (empirical CDF)", fontsize=10)
    if caption:
        add_caption(fig, caption, fontsize=6)
    return fig


def aup_chart(table: pd.DataFrame, caption: str | None = None) -> Figure:
    """Accuracy against tokens per forward, one line per (task, model, decoder) curve, AUP in the legend."""
    from .scoreboard import _points, aup_table, decoder_label

    scores = aup_table(table)
    fig = _figure(7.4, 4.4 + 0.18 * (len(scores) + 2), layout="constrained")
    ax = fig.subplots()
    t = table.assign(decoder=[decoder_label(s, p) for s, p in zip(table["sampler"], table["params"])])
    for i, (_, s) in enumerate(scores.iterrows()):
        g = t[t["run"].isin(s["runs"].split())]
        tpf, acc, _ = _points(g)
        gone = set(s["dropped"].split())
        keep = sorted((x, y) for x, y, r in zip(tpf, acc, g["run"]) if r not in gone)
        ax.plot([x for x, _ in keep], [y for _, y in keep], "-o", color=f"C{i}", ms=5,
                label=f"{s['model']} + {s['decoder']}: AUP {s['aup']:.1f}" + (f" ({s['task']})" if scores["task"].nunique() > 1 else ""))
        for x, y, r in zip(tpf, acc, g["run"]):
            if r in gone:  # not part of the area
                ax.plot([x], [y], "x", color=f"C{i}", ms=8)
    for task, y_max in dict(zip(scores["task"], scores["y_max"])).items():
        ax.axhline(y_max, color="0.5", lw=0.8, ls="--", label=f"y_max {y_max:.1f} ({task})")
    if len(scores) and scores["dropped"].str.len().gt(0).any():
        ax.plot([], [], "x", color="0.3", label="dropped: > 5 points below the curve's first point")
    kinds = ", ".join(sorted(set(scores["tpf_kind"]))) or "dpbench"
    ax.set_xlabel(f"tokens per forward ({kinds} count)")
    ax.set_ylabel("accuracy %")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: never over the points
    ax.set_title("Accuracy under parallelism: accuracy vs tokens per forward", fontsize=10)
    if caption:
        add_caption(fig, caption, fontsize=6)
    return fig


def pick_traces(runs) -> dict[str, list[dict]]:
    """Every traced sample of each run that has traces (run label -> trace rows)."""
    return {r.label: r.traces for r in runs if r.traces}


def save(fig: Figure, out: Path, name: str, formats=FORMATS) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=130)
        paths.append(path)
    return paths


def plot_runs(run_dirs, out: str | Path, baseline: str | None = None, formats=FORMATS) -> list[Path]:
    """Write speedup, tradeoff, nfe_ecdf, aup and (when traces exist) convergence charts into ``out``."""
    from .convergence import convergence_chart
    from .table import _runs

    runs, _ = _runs(run_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(runs, baseline=baseline)
    records = load_records(runs)
    cap = caption_text([r.manifest for r in runs], table["n"])
    paths = save(speedup_chart(table, cap), out, "speedup", formats)
    paths += save(tradeoff_chart(table, cap), out, "tradeoff", formats)
    paths += save(nfe_chart(records, cap), out, "nfe_ecdf", formats)
    paths += save(aup_chart(table, cap), out, "aup", formats)
    traces = pick_traces(runs)
    if traces:
        block = int(table["block_length"].dropna().iloc[0]) if table["block_length"].notna().any() else None
        paths += save(convergence_chart(traces, block, cap), out, "convergence", formats)
    return paths
