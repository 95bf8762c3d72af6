"""dpbench's figures inside lm-eval's results: NFE, tokens per forward and latency beside the task metric.

`annotate` adds to lm-eval's results dict, before lm-eval saves it:

- per task (and per group, over its subtasks) in ``results["results"][task]``, as metrics
  with the ``none`` filter so lm-eval's own table prints them: ``dpbench_nfe_mean``,
  ``dpbench_tokens_per_forward`` (answer tokens before the first EOS / NFE),
  ``dpbench_tpf_leaderboard`` (non-EOS tokens before the stop strings / NFE, as the d3LLM
  leaderboard counts), ``dpbench_latency_s_mean`` / ``_p50`` / ``_p95`` (the batch wall-clock
  split over its samples by NFE, warm-up excluded), ``dpbench_gen_tokens_mean``;
- ``results["config"]["dpbench"]``: model, sampler and its resolved params, batch size, chat,
  seed, device, dpbench version and git commit;
- per logged sample (``--log_samples``) a ``"dpbench"`` object with that request's NFE, tokens,
  seconds and the completion, which is how `dpbench report` reads an lm-eval output directory.
"""

from __future__ import annotations

import statistics
from typing import Any

FIELDS = ("nfe", "gen_tokens", "lb_tokens", "prompt_tokens", "seconds", "batch_seconds", "batch_size", "completion",
          "sampler_params")


def figures(records: list[dict[str, Any]]) -> dict[str, float]:
    """The aggregate figures of some records (see the module doc)."""
    if not records:
        return {}
    nfe = sum(r["nfe"] for r in records)
    secs = sorted(float(r["seconds"]) for r in records)
    out = {
        "dpbench_nfe_mean": nfe / len(records),
        "dpbench_tokens_per_forward": sum(r["gen_tokens"] for r in records) / nfe if nfe else float("nan"),
        "dpbench_latency_s_mean": statistics.fmean(secs),
        "dpbench_latency_s_p50": _quantile(secs, 0.5),
        "dpbench_latency_s_p95": _quantile(secs, 0.95),
        "dpbench_gen_tokens_mean": statistics.fmean(r["gen_tokens"] for r in records),
    }
    if nfe and all(r.get("lb_tokens") is not None for r in records):
        out["dpbench_tpf_leaderboard"] = sum(r["lb_tokens"] for r in records) / nfe
    return out


def _quantile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation, as pandas and numpy do by default."""
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def _subtasks(results: dict[str, Any], group: str) -> list[str]:
    out = []
    for sub in results.get("group_subtasks", {}).get(group, []):
        out += _subtasks(results, sub) if sub in results.get("group_subtasks", {}) else [sub]
    return out


def annotate(results: dict[str, Any], lm, records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Add dpbench's figures to lm-eval's ``results`` (in place; also returned)."""
    from .. import __version__
    from ..records import device_info, git_commit

    records = list(lm.records if records is None else records)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r)
    table = results.setdefault("results", {})
    for task, recs in by_task.items():
        if task in table:
            table[task].update({f"{k},none": v for k, v in figures(recs).items()})
    for section in ("results", "groups"):
        for group in results.get("group_subtasks", {}):
            recs = [r for sub in _subtasks(results, group) for r in by_task.get(sub, [])]
            if group in results.get(section, {}) and recs:
                results[section][group].update({f"{k},none": v for k, v in figures(recs).items()})
    results.setdefault("config", {})["dpbench"] = {
        **lm.describe(), "device": str(lm.device), "device_info": device_info(lm.device),
        "dpbench_version": __version__, "git_commit": git_commit(),
        "timing": "per-sample seconds = the batch's wall-clock split by NFE; one warm-up batch untimed",
    }
    first: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in records:
        first.setdefault((r["task"], r["doc_id"]), r)
    for task, rows in (results.get("samples") or {}).items():
        for s in rows:  # one line per (document, filter): each gets its document's figures
            rec = first.get((task, s.get("doc_id")))
            if rec is not None:
                s["dpbench"] = {f: rec[f] for f in FIELDS if f in rec}
    return results


__all__ = ["FIELDS", "annotate", "figures"]
