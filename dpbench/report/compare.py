"""Two runs of the same documents, sample by sample: does a change (a cache, a CUDA graph,
another device or dtype) alter what is decoded, and what does it buy?"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .table import load_run


def compare_runs(run_a: str | Path, run_b: str | Path, show: int = 5) -> dict[str, Any]:
    """Agreement of run B with run A on the documents both decoded, and their accuracy, NFE and time.

    ``same_completion``: identical answer text; ``same_answer``: the same extracted answer
    (what is scored); ``flips``: correct in A only / in B only; ``speedup_time``: A's decode
    seconds / B's on those documents. ``differ``: up to ``show`` doc ids whose text differs.
    """
    (_, a), (_, b) = load_run(run_a), load_run(run_b)
    if a.empty or b.empty:
        raise ValueError(f"nothing to compare: {run_a if a.empty else run_b} has no samples")
    both = a.merge(b, on="doc_id", suffixes=("_a", "_b"))
    if both.empty:
        raise ValueError(f"{run_a} and {run_b} share no documents (doc_id)")
    n = len(both)
    text_same = both["completion_a"] == both["completion_b"]
    secs_a, secs_b = both["seconds_a"].sum(), both["seconds_b"].sum()
    return {
        "n": n, "only_a": len(a) - n, "only_b": len(b) - n,
        "same_completion": float(text_same.mean()),
        "same_answer": sum(_same(x, y) for x, y in zip(both["extracted_a"], both["extracted_b"])) / n,
        "same_nfe": float((both["nfe_a"] == both["nfe_b"]).mean()),
        "accuracy_a": float(both["correct_a"].mean()), "accuracy_b": float(both["correct_b"].mean()),
        "flips": (int((both["correct_a"] & ~both["correct_b"]).sum()), int((~both["correct_a"] & both["correct_b"]).sum())),
        "nfe_mean_a": float(both["nfe_a"].mean()), "nfe_mean_b": float(both["nfe_b"].mean()),
        "seconds_a": float(secs_a), "seconds_b": float(secs_b),
        "speedup_time": float(secs_a / secs_b) if secs_b > 0 else float("nan"),
        "differ": [str(d) for d in both.loc[~text_same, "doc_id"].head(show)],
    }


def _same(x: Any, y: Any) -> bool:
    """Equal extracted answers; two missing ones (None or NaN after a join) count as equal."""
    missing = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    return (missing(x) and missing(y)) or x == y


def format_comparison(c: dict[str, Any], label_a: str = "A", label_b: str = "B") -> str:
    lines = [
        f"{c['n']} documents in both runs" + (f" ({c['only_a']} only in {label_a}, {c['only_b']} only in {label_b})"
                                             if c["only_a"] or c["only_b"] else ""),
        f"same completion {100 * c['same_completion']:.1f}%, same answer {100 * c['same_answer']:.1f}%, "
        f"same NFE {100 * c['same_nfe']:.1f}%",
        f"accuracy {label_a} {100 * c['accuracy_a']:.1f}%, {label_b} {100 * c['accuracy_b']:.1f}% "
        f"(correct only in {label_a}: {c['flips'][0]}, only in {label_b}: {c['flips'][1]})",
        f"NFE mean {label_a} {c['nfe_mean_a']:.2f}, {label_b} {c['nfe_mean_b']:.2f}; decode seconds {label_a} "
        f"{c['seconds_a']:.2f}, {label_b} {c['seconds_b']:.2f} ({_relative(c['speedup_time'], label_b)})",
    ]
    if c["differ"]:
        lines.append(f"text differs, e.g. doc_id {', '.join(c['differ'])}")
    return "\n".join(lines)


def _relative(speedup: float, label: str) -> str:
    """``B 2.00x faster`` or, below 1, ``B 3.10x slower`` (not ``0.32x faster``)."""
    if not speedup or math.isnan(speedup) or math.isinf(speedup):
        return f"{label}: no decode-time ratio"
    return f"{label} {speedup:.2f}x faster" if speedup >= 1 else f"{label} {1 / speedup:.2f}x slower"
