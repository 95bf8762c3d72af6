"""AUP over the runs of a report, and the d3LLM leaderboard's published curves beside them.

A *curve* is every run of one (task, model, decoder) in the table: the decoder is the
sampler plus its non-default parameters other than ``threshold``/``steps`` (so a
threshold grid of ``dparallel`` is one curve, ``dparallel cache=dual`` another). Its
points are (tokens per forward, accuracy %): the leaderboard's TPF (``tpf_lb``: non-EOS
tokens before the task's stop strings / NFE) when every run of the curve recorded it,
else dpbench's own TPF (answer tokens before the first EOS / NFE); ``tpf_kind`` says which.

``y_max`` is taken as the leaderboard takes it: the best accuracy of any method on that
task, autoregressive baselines included. For a task the leaderboard publishes (gsm8k ~
GSM8K-CoT, minerva_math ~ MATH, humaneval, mbpp) that is the best of its table (LLaDA,
Dream or Dream-Coder, chosen from the model names unless given) *and* of the runs
compared here, so published and measured curves share one y_max. For a task with no
published table (arith, code_arith) it is the best accuracy among the runs compared,
baselines included. dpbench adds no point the runs do not have: the leaderboard's curves
start at each method's slow setting, written as TPF 1.0; a sweep's curve starts at its
lowest threshold's measured TPF.
"""

from __future__ import annotations

import pandas as pd

from .aup import aup_curve


def decoder_label(sampler: str, params: str) -> str:
    """``dparallel`` for ``threshold=0.5``; ``dparallel cache=dual`` for ``threshold=0.5 cache=dual``."""
    rest = [p for p in str(params or "").split() if not p.startswith(("threshold=", "steps="))]
    return " ".join([sampler, *rest])


def leaderboard_family(models) -> str:
    """The leaderboard table closest to these models: Dream-Coder, Dream, else LLaDA."""
    names = " ".join(str(m).lower() for m in models)
    if "dream" in names and "coder" in names:
        return "Dream-Coder"
    return "Dream" if "dream" in names else "LLaDA"


def published(task: str, family: str | None = None, models=()) -> pd.DataFrame:
    """The leaderboard's points for dpbench task ``task`` in one family's table (empty if it has none)."""
    from ..data import leaderboard_points

    fam = family or leaderboard_family(models)
    pts = leaderboard_points(fam)
    return pts[pts["task"] == task].reset_index(drop=True)


def _points(rows: pd.DataFrame) -> tuple[list[float], list[float], str]:
    lb = rows.get("tpf_lb")
    if lb is not None and lb.notna().all() and (lb > 0).all():
        return list(lb), list(100 * rows["accuracy"]), "leaderboard"
    return list(rows["tpf"]), list(100 * rows["accuracy"]), "dpbench"


def y_max_for(task: str, table: pd.DataFrame, family: str | None = None) -> tuple[float, str]:
    """``(y_max, where it came from)`` for ``task`` (see the module doc)."""
    ours = table[table["task"] == task]
    best = float(100 * ours["accuracy"].max()) if len(ours) else float("nan")
    pub = published(task, family, ours["model"])
    if len(pub):
        top = pub.loc[pub["accuracy_pct"].idxmax()]
        if not best > top["accuracy_pct"]:
            return float(top["accuracy_pct"]), f"leaderboard {top['family']} {top['benchmark']}: {top['method']}"
        return best, f"these runs (above leaderboard {top['family']} {top['benchmark']})"
    return best, "best of these runs"


def aup_table(table: pd.DataFrame, family: str | None = None) -> pd.DataFrame:
    """One row per curve: task, model, decoder, points, TPF and accuracy range, y_max, AUP, dropped runs."""
    cols = ["task", "model", "decoder", "points", "runs", "tpf_kind", "tpf_min", "tpf_max", "acc_min", "acc_max",
            "y_max", "y_max_from", "aup", "dropped"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    t = table[table["n"] > 0].assign(decoder=[decoder_label(s, p) for s, p in zip(table["sampler"], table["params"])])
    rows = []
    for (task, model, dec), g in t.groupby(["task", "model", "decoder"], sort=False):
        tpf, acc, kind = _points(g)
        y_max, src = y_max_for(task, table, family)
        curve = aup_curve(tpf, acc, y_max)
        dropped = [run for run, x, y in zip(g["run"], tpf, acc) if (x, y) in curve.dropped]
        rows.append({"task": task, "model": model, "decoder": dec, "points": len(g), "runs": " ".join(g["run"]),
                     "tpf_kind": kind, "tpf_min": min(tpf), "tpf_max": max(tpf), "acc_min": min(acc),
                     "acc_max": max(acc), "y_max": y_max, "y_max_from": src, "aup": curve.value,
                     "dropped": " ".join(dropped)})
    return pd.DataFrame(rows, columns=cols)


def format_aup(scores: pd.DataFrame) -> pd.DataFrame:
    """`aup_table` as strings for printing and Markdown."""
    return pd.DataFrame({
        "task": scores["task"], "model": scores["model"], "decoder": scores["decoder"], "points": scores["points"],
        "TPF": [f"{a:.2f}" if a == b else f"{a:.2f}-{b:.2f}" for a, b in zip(scores["tpf_min"], scores["tpf_max"])],
        "TPF counted": scores["tpf_kind"],
        "accuracy %": [f"{a:.1f}" if a == b else f"{a:.1f}-{b:.1f}" for a, b in zip(scores["acc_min"], scores["acc_max"])],
        "y_max": [f"{y:.2f} ({s})" for y, s in zip(scores["y_max"], scores["y_max_from"])],
        "AUP": scores["aup"].map(lambda x: f"{x:.1f}"),
        "dropped (> 5 points below)": scores["dropped"],
    })


def leaderboard_table(table: pd.DataFrame, family: str | None = None) -> pd.DataFrame:
    """For every task of ``table`` the leaderboard publishes: its methods' curves and AUP beside the runs'.

    One row per curve with ``source`` (``published`` or ``dpbench``), ``method``, the points as
    ``TPF@accuracy`` and AUP against the shared y_max, best first within each task.
    """
    rows = []
    for task in dict.fromkeys(table["task"]):
        pub = published(task, family, table[table["task"] == task]["model"])
        if pub.empty:
            continue
        y_max, src = y_max_for(task, table, family)
        for method, g in pub.groupby("method", sort=False):
            g = g.sort_values("tpf")
            rows.append({"task": task, "benchmark": g["benchmark"].iloc[0], "source": f"published ({g['family'].iloc[0]})",
                         "method": method, "points": " ".join(f"{x:.2f}@{y:.2f}" for x, y in zip(g["tpf"], g["accuracy_pct"])),
                         "aup": aup_curve(g["tpf"], g["accuracy_pct"], y_max).value, "y_max": y_max, "y_max_from": src})
        for _, s in aup_table(table[table["task"] == task], family).iterrows():
            t = table[(table["task"] == task) & table["run"].isin(s["runs"].split())].sort_values("tpf")
            tpf, acc, _ = _points(t)
            rows.append({"task": task, "benchmark": pub["benchmark"].iloc[0], "source": f"dpbench ({s['tpf_kind']} TPF)",
                         "method": f"{s['model']} + {s['decoder']}",
                         "points": " ".join(f"{x:.2f}@{y:.2f}" for x, y in sorted(zip(tpf, acc))),
                         "aup": s["aup"], "y_max": y_max, "y_max_from": src})
    out = pd.DataFrame(rows, columns=["task", "benchmark", "source", "method", "points", "aup", "y_max", "y_max_from"])
    if out.empty:
        return out
    return out.sort_values(["task", "aup"], ascending=[True, False], kind="stable").reset_index(drop=True)


__all__ = ["aup_table", "decoder_label", "format_aup", "leaderboard_family", "leaderboard_table", "published",
           "y_max_for"]
