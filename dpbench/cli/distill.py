"""`dpbench distill` (trajectories -> train -> merge) and `dpbench sweep` (trade-off chart)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app


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
    threads: Optional[int] = typer.Option(None, help="torch CPU threads for every stage (default: the config's)."),
) -> None:
    """Certainty-forcing distillation of TEACHER on TASK; each stage resumes where it stopped.

    Example: dpbench distill --teacher tiny-arith --task arith --config configs/distill/tiny-arith.yaml --out runs/student
    """
    from ..distill import STAGES, DistillConfig, run_distill

    try:
        cfg = DistillConfig.from_yaml(config) if config else DistillConfig()
        cfg = cfg.override("train", entropy_weight=entropy_weight, max_steps=max_steps, epochs=epochs,
                           learning_rate=learning_rate, finetune=finetune, seed=seed)
        cfg = cfg.override("trajectories", limit=limit, dataset=data)
        if threads is not None:
            cfg = DistillConfig.from_dict({**cfg.to_dict(), "threads": threads})
        teacher_name = teacher or cfg.teacher
        task_name = task or cfg.task
        if not teacher_name or not task_name:
            raise ValueError("give --teacher and --task (or teacher: / task: in the config)")
        stages = tuple(stage) if stage else STAGES
        report = run_distill(teacher_name, task_name, out, cfg, stages=stages, device=device, name=name)
    except (ValueError, OSError) as err:
        raise typer.BadParameter(str(err)) from None
    if "merge" in report:
        typer.echo(f"student: {report['merge']['model_dir']}  (use --model {report['merge']['model_dir']})")


@app.command()
def sweep(
    task: str = typer.Argument(..., help="Task name (e.g. arith)."),
    model: List[str] = typer.Option(..., "--model", "-m", help="Model, or LABEL=MODEL (repeatable; the first is the reference)."),
    sampler: str = typer.Option("dparallel", "--sampler", "-s", help="Sampler to sweep."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="key=v1,v2,... (repeatable: a grid)."),
    out: Path = typer.Option(Path("results/sweep"), "--out", "-o", help="Directory for runs/, sweep.csv, tradeoff.png."),
    limit: Optional[int] = typer.Option(None, help="First N documents of the split."),
    batch_size: int = typer.Option(16, help="Documents decoded together."),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    split: str = typer.Option("test", help="Document split (choose thresholds on arith's 'validation', report on 'test')."),
    title: Optional[str] = typer.Option(None, help="Chart title."),
) -> None:
    """Sweep a sampler parameter for one or more models (plus each model's baseline); write a table and chart.

    Example: dpbench sweep arith -m tiny-arith -m tiny-arith-dparallel --sampler dparallel --param threshold=0.1,0.3,0.5,0.7
    """
    from ..distill.sweep import parse_grid, plot_tradeoff, run_sweep

    try:
        grid = parse_grid(param)
        df = run_sweep(task, list(model), sampler, grid, out=out, limit=limit, batch_size=batch_size,
                       device=device, split=split)
    except (ValueError, OSError) as err:
        raise typer.BadParameter(str(err)) from None
    chart = plot_tradeoff(df, out / "tradeoff.png", sampler=sampler, title=title or f"{task}: accuracy vs speedup")
    cols = ["model", "sampler", *grid, "n", "accuracy", "nfe_mean", "tpf", "speedup"]
    typer.echo(df[[c for c in cols if c in df.columns]].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    typer.echo(f"table: {out / 'sweep.csv'}\nchart: {chart}")
