"""`dpbench distill` (trajectories -> train -> merge) and `dpbench sweep` (trade-off chart)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .errors import cli_error


@app.command()
def distill(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (trajectories/, train/, model/)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help="Teacher: preset, local directory or hub id."),
    task: Optional[str] = typer.Option(None, "--task", help="Task whose training prompts the teacher answers."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (default: the paper's settings)."),
    stage: Optional[List[str]] = typer.Option(None, "--stage", help="trajectories, train or merge (repeatable; default all)."),
    entropy_weight: Optional[float] = typer.Option(None, help="Entropy term weight (0 = plain trajectory distillation)."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps (overrides epochs)."),
    epochs: Optional[float] = typer.Option(None, help="Epochs over the trajectories."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    finetune: Optional[str] = typer.Option(None, help="lora or full."),
    limit: Optional[int] = typer.Option(None, help="Use the first N training prompts."),
    data: Optional[str] = typer.Option(None, help="Existing dataset (columns question, llm_response) instead of decoding."),
    seed: Optional[int] = typer.Option(None, help="Seed for batch order and masks."),
    name: Optional[str] = typer.Option(None, help="Name written into the model card."),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    estimate: bool = typer.Option(True, help="Before starting, time a probe decode and a training step and print how long it will take."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads for every stage (default: the config's)."),
) -> None:
    """Certainty-forcing distillation of TEACHER on TASK; each stage resumes where it stopped.

    Example: dpbench distill --teacher tiny-arith --task arith --config configs/distill/tiny-arith.yaml --out runs/student
    """
    from ..distill import STAGES, DistillConfig, run_distill
    from ..preflight import check_distill

    try:
        cfg = DistillConfig.from_yaml(config) if config else DistillConfig()
        cfg = cfg.override("train", entropy_weight=entropy_weight, max_steps=max_steps, epochs=epochs,
                           learning_rate=learning_rate, finetune=finetune, seed=seed)
        cfg = cfg.override("trajectories", limit=limit, dataset=data)
        if threads is not None:
            cfg = DistillConfig.from_dict({**cfg.to_dict(), "threads": threads})
        teacher_name = teacher or cfg.teacher
        task_name = task or cfg.task
        stages = tuple(stage) if stage else STAGES
        check_distill(teacher_name, task_name, cfg, stages, out)  # every argument, before anything loads
        typer.echo(f"distill: {teacher_name} on {task_name}, stages {', '.join(stages)}, into {out}")
        if estimate:
            from ..estimate import estimate_distill, fmt_seconds
            from ..tasks import get_task

            typer.echo(f"estimate: about {fmt_seconds(estimate_distill(teacher_name, get_task(task_name, **cfg.task_options), cfg, stages, device=device, log=typer.echo))}")
        report = run_distill(teacher_name, task_name, out, cfg, stages=stages, device=device, name=name)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    if "merge" in report:
        typer.echo(f"student: {report['merge']['model_dir']}  (use --model {report['merge']['model_dir']})")


@app.command()
def sweep(
    task: str = typer.Argument(..., help="Task name (e.g. arith)."),
    model: List[str] = typer.Option(..., "--model", "-m", help="Model, or LABEL=MODEL (repeatable; the first is the reference)."),
    sampler: str = typer.Option("dparallel", "--sampler", "-s", help="Sampler(s) to sweep, comma-separated (each model's baseline always runs)."),
    param: Optional[List[str]] = typer.Option(
        None, "--param", "-p", help="key=v1,v2,... (repeatable: a grid); SAMPLER:key=v1,v2 for one sampler only."),
    out: Path = typer.Option(Path("results/sweep"), "--out", "-o", help="Directory for runs/, sweep.csv, aup.csv, tradeoff.png."),
    limit: Optional[int] = typer.Option(None, help="First N documents of the split."),
    batch_size: int = typer.Option(16, help="Documents decoded together."),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    split: str = typer.Option("test", help="Document split (choose thresholds on arith's 'validation', report on 'test')."),
    title: Optional[str] = typer.Option(None, help="Chart title."),
    estimate: bool = typer.Option(True, help="Before starting, decode a probe batch per run and print how long the sweep will take."),
) -> None:
    """Sweep sampler parameters for one or more models (plus each model's baseline); table, AUP and chart.

    Every model, the task and every sampler setting are checked before the first forward.

    Example: dpbench sweep arith -m tiny-arith -m tiny-arith-dparallel --sampler dparallel,confidence -p dparallel:threshold=0.1,0.3,0.5 -p confidence:threshold=0.7,0.9
    """
    import pandas as pd

    from ..distill.sweep import parse_grid, plot_tradeoff, run_sweep
    from ..report.scoreboard import format_aup

    try:
        grid = parse_grid(param)
        df = run_sweep(task, list(model), sampler, grid, out=out, limit=limit, batch_size=batch_size,
                       device=device, split=split, estimate=estimate, log=typer.echo)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    chart = plot_tradeoff(df, out / "tradeoff.png", sampler=sampler, title=title or f"{task}: accuracy vs speedup")
    keys = list(dict.fromkeys(k.rpartition(":")[2] for k in grid))
    cols = ["model", "sampler", *keys, "n", "accuracy", "nfe_mean", "tpf", "tpf_lb", "speedup"]
    typer.echo(df[[c for c in cols if c in df.columns]].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    with pd.option_context("display.width", 250, "display.max_columns", None):
        typer.echo("\nAUP per (model, decoder) over the grid:")
        typer.echo(format_aup(df.attrs["aup"]).to_string(index=False))
    typer.echo(f"table: {out / 'sweep.csv'}\nAUP: {out / 'aup.csv'}\nchart: {chart}")
