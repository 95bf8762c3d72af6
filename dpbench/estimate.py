"""How long will it take? Rough estimates that long commands print before they start.

Measured, not guessed: each planned run's model is loaded once and a small probe
batch (at most 8 problems) is decoded with the run's own sampler; seconds per problem
x problems gives the run's estimate. The probe runs at a smaller batch than the run,
and on a CPU a larger batch buys at most ~2x throughput, so estimates lean high there;
the time of later machine load is not in them. Training estimates time a few optimizer
steps the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

PROBE = 8  # problems decoded per probe


@dataclass
class PlannedRun:
    label: str
    model: str  # preset, directory or hub id (what load_model takes)
    sampler: str
    params: dict[str, Any]
    task: str
    n: int  # problems still to decode
    batch_size: int
    split: str = "test"
    data_file: str | None = None


def fmt_seconds(s: float) -> str:
    """``45 s``, ``7.5 min``, ``2.3 h``."""
    if s != s:
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def probe_seconds_per_problem(lm, tok, task, sampler, *, split: str = "test", batch_size: int = PROBE) -> float:
    """Decode up to ``PROBE`` of the task's documents once (after a one-problem warm-up); seconds per problem."""
    from .records import decode_batch

    k = max(1, min(PROBE, batch_size))
    docs = task.docs(split, k)
    if not docs:
        return 0.0
    prompts = [task.build_prompt(d, tok) for d in docs]
    decode_batch(lm, tok, sampler, prompts[:1])  # first-call costs (allocator, kernel build) are not the run's
    t0 = time.perf_counter()
    decode_batch(lm, tok, sampler, prompts)
    return (time.perf_counter() - t0) / len(prompts)


def estimate_runs(plan: list[PlannedRun], *, device: str | None = None, dtype: str | None = None,
                  log: Callable[[str], None] = print) -> float:
    """Probe every planned run (one model load per model) and return the total estimated seconds.

    Writes one line per run to ``log``. Model loading is timed once and counted once per
    run (each run loads its model again).
    """
    from .models import load_model
    from .samplers import build_sampler
    from .tasks import get_task

    total = 0.0
    loaded: dict[str, tuple[Any, Any, float]] = {}
    for run in plan:
        if run.n <= 0:
            log(f"  {run.label}: finished already")
            continue
        if run.model not in loaded:
            loaded.clear()  # one model in memory at a time
            t0 = time.perf_counter()
            lm, tok = load_model(run.model, device=device, dtype=dtype)
            loaded[run.model] = (lm, tok, time.perf_counter() - t0)
        lm, tok, load_s = loaded[run.model]
        task = get_task(run.task, **({"data_file": run.data_file} if run.data_file else {}))
        sampler = build_sampler(run.sampler, run.params, task=task)
        per = probe_seconds_per_problem(lm, tok, task, sampler, split=run.split, batch_size=run.batch_size)
        secs = per * run.n + load_s
        total += secs
        log(f"  {run.label}: {run.n} problems x {per:.3f} s = {fmt_seconds(secs)}")
    return total


__all__ = ["PROBE", "PlannedRun", "estimate_runs", "fmt_seconds", "probe_seconds_per_problem"]
