"""`dpbench run`, `dpbench report`, `dpbench compare`, `dpbench plot` and `dpbench demo`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .errors import cli_error
from .core import parse_params

THREADS_HELP = "CPU threads for torch (default: torch's choice). On a busy machine 1 can be much faster."


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


@app.command()
def run(
    task: str = typer.Argument(..., help="Task name, e.g. arith."),
    sampler: str = typer.Option(..., "--sampler", "-s", help="Sampler name (see `dpbench samplers`)."),
    model: str = typer.Option("tiny-arith", "--model", "-m", help="Preset, local directory or hub id."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Sampler parameter k=v (repeatable); overrides the task's defaults."),
    limit: Optional[int] = typer.Option(None, help="Only the first N documents."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Prompts decoded together."),
    seed: int = typer.Option(0, help="Seed (sampling at temperature > 0)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default results/runs/<task>-<model>-<sampler>-<params>)."),
    split: str = typer.Option("test", help="Document split."),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    dtype: Optional[str] = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)."),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    data_file: Optional[Path] = typer.Option(None, help="Local JSONL in the hub schema (gsm8k, minerva_math, mbpp) instead of the hub."),
    engine: str = typer.Option("auto", help="auto (lm-eval for gsm8k/minerva_math, else dpbench), lmeval or dpbench."),
    num_processes: int = typer.Option(1, help="Data-parallel ranks (relaunches itself under torchrun; gloo on CPU, nccl on GPU)."),
) -> None:
    """Decode and score every document; append one record per sample. Rerun the same command to resume.

    Example: dpbench run arith --sampler dparallel --model tiny-arith -p threshold=0.5 --limit 200 --out results/runs/dp
    """
    import os
    import sys

    from ..runner import RunConfig
    from ..runner import run as run_job

    from ..preflight import check_run

    if num_processes < 1:
        raise typer.BadParameter(f"--num-processes must be >= 1, got {num_processes}")
    cfg = RunConfig(task=task, model=model, sampler=sampler, params=parse_params(param), out=str(out) if out else None,
                    limit=limit, batch_size=batch_size, seed=seed, split=split, device=device, dtype=dtype,
                    data_file=str(data_file) if data_file else None, engine=engine)
    if "WORLD_SIZE" not in os.environ:  # checked once, by the launcher, before anything loads
        try:
            check_run(cfg)
        except ValueError as err:
            raise cli_error(err) from None
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        from ..distributed import relaunch_with_torchrun

        argv = _drop_option(sys.argv[1:], "--num-processes")
        raise typer.Exit(relaunch_with_torchrun(num_processes, argv))
    _set_threads(threads)
    try:
        summary = run_job(cfg)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(str(summary))


def _drop_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


@app.command()
def report(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories or lm-eval output directories (others are skipped with a note)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.csv, aup.csv and report.md here."),
    baseline: Optional[str] = typer.Option(None, help="Run (directory name) every speedup is measured against."),
    paper: bool = typer.Option(False, "--paper", help="Also show the dParallel paper's reported numbers for the same tasks."),
    paper_model: Optional[str] = typer.Option(None, help="With --paper: only this paper model (llada or dream)."),
    aup: bool = typer.Option(False, "--aup", help="Also print AUP per (task, model, sampler) curve (docs/runs.md#aup)."),
    leaderboard: bool = typer.Option(
        False, "--leaderboard", help="Also print the d3LLM AUP leaderboard's published curves beside yours (same task)."),
    leaderboard_family: Optional[str] = typer.Option(
        None, help="Leaderboard table: LLaDA, Dream or Dream-Coder (default: from the model names, else LLaDA)."),
) -> None:
    """Print accuracy (95% CI), NFE, tokens per forward, latency and speedup per run.

    Example: dpbench report results/demo/* --aup --leaderboard --out runs/report
    """
    import pandas as pd

    from ..records import sandbox_notes
    from ..report import format_table, summarize, write_report
    from ..report.scoreboard import aup_table, format_aup, leaderboard_table
    from ..report.table import paper_beside

    try:
        table, files = write_report(run_dirs, out, baseline) if out else (summarize(run_dirs, baseline), [])
        reported = paper_beside(table, paper_model) if paper else None
        scores = format_aup(aup_table(table, leaderboard_family)) if aup else None
        board = leaderboard_table(table, leaderboard_family) if leaderboard else None
        notes = sandbox_notes(run_dirs)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 80):
        for note in table.attrs.get("notes", []):
            typer.echo(f"note: {note}")
        typer.echo("measured:")
        typer.echo(format_table(table).to_string(index=False))
        if reported is not None:
            if reported.empty:
                typer.echo(f"\nthe dParallel paper reports none of these tasks ({', '.join(dict.fromkeys(table['task']))})")
            else:
                typer.echo("\nreported in the dParallel paper (latency on the authors' GPU):")
                typer.echo(reported.to_string(index=False))
        if scores is not None:
            typer.echo("\nAUP (accuracy under parallelism) per curve:")
            typer.echo(scores.to_string(index=False))
        if board is not None:
            if board.empty:
                typer.echo(f"\nthe AUP leaderboard publishes none of these tasks ({', '.join(dict.fromkeys(table['task']))}); "
                           "it has gsm8k, minerva_math, humaneval and mbpp")
            else:
                typer.echo("\nAUP leaderboard (d3LLM, published points) beside these runs, one y_max per task:")
                typer.echo(board.assign(aup=board["aup"].map(lambda x: f"{x:.1f}"),
                                        y_max=board["y_max"].map(lambda x: f"{x:.2f}")).to_string(index=False))
    for line in notes:
        typer.echo(f"note: {line}")
    for f in files:
        typer.echo(f"wrote {f}")


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="Reference run directory."),
    run_b: Path = typer.Argument(..., help="Run directory compared with it (same task and documents)."),
) -> None:
    """Sample-by-sample agreement of two runs (same text, answer, NFE), accuracy flips and time ratio.

    Example: dpbench compare results/runs/dp-none results/runs/dp-dual
    """
    from ..report.compare import compare_runs, format_comparison
    from ..report.table import run_labels

    try:
        result = compare_runs(run_a, run_b)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    typer.echo(format_comparison(result, *run_labels([run_a, run_b])))


@app.command()
def plot(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the charts (PNG and SVG)."),
    baseline: Optional[str] = typer.Option(None, help="Run (directory name) every speedup is measured against."),
) -> None:
    """Speedup bars, accuracy vs NFE, NFE histograms and the certainty-convergence chart.

    Example: dpbench plot results/demo/baseline results/demo/dparallel-0.5 --out runs/charts
    """
    from ..report import plot_runs

    try:
        files = plot_runs(run_dirs, out, baseline=baseline)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    for f in files:
        typer.echo(f"wrote {f}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Directory for the runs, report and charts (runs/ is git-ignored; the committed copy is results/demo)."),
    limit: int = typer.Option(200, help="Held-out arith problems per run."),
    batch_size: int = typer.Option(50, "--batch-size", "-b", help="Prompts decoded together."),
    resume: bool = typer.Option(False, help="Keep finished samples of an earlier demo instead of starting over."),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    threads: int = typer.Option(1, help="CPU threads for torch while the demo runs (the tiny model gains little from more)."),
    estimate: bool = typer.Option(True, help="Before starting, decode a probe batch per run and print how long the demo will take."),
) -> None:
    """Benchmark baseline, confidence 0.9, dParallel 0.5 (and multiblock where registered) on the shipped tiny models.

    Writes the runs, report.md (with AUP) and the charts to runs/demo; the committed results/demo is a copy of it.

    Example: dpbench demo --limit 200
    """
    import pandas as pd

    from ..demo import run_demo
    from ..report import format_table

    if threads < 1:
        raise typer.BadParameter(f"--threads must be >= 1, got {threads}")
    try:
        res = run_demo(out, limit=limit, batch_size=batch_size, resume=resume, device=device, threads=threads,
                       estimate=estimate, log=typer.echo)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    with pd.option_context("display.width", 250, "display.max_columns", None):
        typer.echo(format_table(res.table).to_string(index=False))
    if res.skipped:
        typer.echo(f"not run: {'; '.join(res.skipped)}")
    typer.echo(f"report and charts in {res.out}/ ({res.seconds:.0f} s)")
