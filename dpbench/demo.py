"""`dpbench demo`: the project's main job, end to end, offline, in minutes on a laptop CPU.

Benchmarks the shipped `tiny-arith` teacher on the built-in `arith` task with
the `baseline` sampler (the task's default 64 steps), Fast-dLLM's confidence
threshold 0.9 and dParallel's entropy threshold 0.5, plus the distilled student
`tiny-arith-dparallel` with dParallel when that preset is installed, and d3LLM's
multi-block decoder (`multiblock`) on both when this install registers it. Each run
is an ordinary run directory under ``out`` (default ``runs/demo``, which git ignores;
the committed ``results/demo`` is regenerated explicitly, by copying ``runs/demo`` there, so its manifests
name a clean commit);
the report (``report.md`` with AUP, ``report.csv``, ``aup.csv``) and the charts (PNG +
SVG) are written next to them.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

TEACHER, STUDENT, TASK = "tiny-arith", "tiny-arith-dparallel", "arith"
# (run directory name, model, sampler, params on top of the task's defaults)
RUNS = (
    ("baseline", TEACHER, "baseline", {}),
    ("confidence-0.9", TEACHER, "confidence", {"threshold": 0.9}),
    ("dparallel-0.5", TEACHER, "dparallel", {"threshold": 0.5}),
    ("multiblock-0.5", TEACHER, "multiblock", {"threshold": 0.5}),
    ("student-dparallel-0.5", STUDENT, "dparallel", {"threshold": 0.5}),
    ("student-multiblock-0.5", STUDENT, "multiblock", {"threshold": 0.5}),
)
DEFAULT_OUT = "runs/demo"


@dataclass
class DemoResult:
    out: Path
    table: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # runs whose model or sampler is not in this install


def installed(model: str) -> bool:
    """A built-in preset whose files are shipped, or a local model directory."""
    from .models.presets import PRESETS

    return os.path.isdir(PRESETS[model].source if model in PRESETS else model)


def registered(sampler: str) -> bool:
    """Whether this install has sampler ``sampler`` (``multiblock`` arrives with d3LLM's decoder)."""
    from .samplers import sampler_class

    try:
        sampler_class(sampler)
    except ValueError:
        return False
    return True


def plan(runs=RUNS) -> tuple[list, list[str]]:
    """The runs this install can do, and one reason per run it cannot."""
    keep, skipped = [], []
    for run in runs:
        name, model, sampler, _ = run
        if not installed(model):
            skipped.append(f"{name} (model {model} not installed)")
        elif not registered(sampler):
            skipped.append(f"{name} (sampler {sampler} not registered in this install)")
        else:
            keep.append(run)
    return keep, skipped


def run_demo(out: str | Path = DEFAULT_OUT, *, limit: int = 200, batch_size: int = 50, resume: bool = False,
             device: str | None = None, threads: int | None = 1, progress: bool = True, task: str = TASK,
             runs=RUNS, estimate: bool = False, log=print) -> DemoResult:
    """Run the demo into ``out`` and write its report and charts there.

    Without ``resume`` the demo's own run directories are deleted first, so the
    figures are this machine's; with it, finished samples are kept. ``task`` and
    ``runs`` (name, model, sampler, params) default to the shipped demo.
    ``threads`` (torch CPU threads while the demo runs, None = torch's default)
    is 1 by default: the 0.9M-parameter model's matrices are too small to split
    well across threads, and spinning threads compete with whatever else runs.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(Path(out), limit, batch_size, resume, device, progress, task, runs, estimate, log)
    finally:
        torch.set_num_threads(before)


def _run_demo(out: Path, limit, batch_size, resume, device, progress, task, runs, estimate, log) -> DemoResult:
    from .models import ModelNotFoundError
    from .report import plot_runs, write_report
    from .runner import RunConfig, run

    if not installed(runs[0][1]):
        raise ModelNotFoundError(f"the demo needs the model {runs[0][1]!r}, which this install does not ship")
    todo, skipped = plan(runs)
    log(f"demo: {len(todo)} runs ({', '.join(r[0] for r in todo)}) x {limit} held-out {task} problems, batch {batch_size}, "
        f"into {out}/" + (f"; not run: {'; '.join(skipped)}" if skipped else ""))
    if estimate:
        from .estimate import PlannedRun, estimate_runs, fmt_seconds

        planned = [PlannedRun(name, model, sampler, dict(params), task, limit, batch_size)
                   for name, model, sampler, params in todo]
        log(f"estimate: about {fmt_seconds(estimate_runs(planned, device=device, log=log))} (probe of 8 problems per run)")
    t0 = time.perf_counter()
    dirs = []
    for name, model, sampler, params in todo:
        run_dir = out / name
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        run(RunConfig(task=task, model=model, sampler=sampler, params=dict(params), out=str(run_dir), limit=limit,
                      batch_size=batch_size, device=device, progress=progress))
        dirs.append(run_dir)
    table, files = write_report(dirs, out)
    files += plot_runs(dirs, out)
    seconds = time.perf_counter() - t0
    note = (f"\nDemo: `dpbench demo --out {out} --limit {limit}`, {limit} held-out `{task}` problems per run, batch size "
            f"{batch_size}, {seconds:.0f} s wall-clock in all (model loading and charts included) on "
            f"{_device_words(dirs)}.\n")
    if skipped:
        note += f"Not run: {'; '.join(skipped)}.\n"
    with open(out / "report.md", "a", encoding="utf-8") as fh:
        fh.write(note)
    return DemoResult(out, table, files, seconds, skipped)


def _device_words(dirs: list[Path]) -> str:
    import json

    info = json.loads((dirs[0] / "manifest.json").read_text()).get("device_info", {}) if dirs else {}
    if info.get("type") == "cpu":
        return f"CPU ({info.get('cpu_count')} cores, torch threads: {info.get('torch_threads')})"
    return str(info.get("name") or info.get("type") or "unknown device")
