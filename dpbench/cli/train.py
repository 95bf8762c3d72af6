"""`dpbench pretrain`: train the built-in tiny model on a built-in task."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .errors import cli_error


@app.command()
def pretrain(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the HF checkpoint, model card and checkpoints/."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Recipe YAML (configs/pretrain/); flags override it. Default: the shipped teacher's."
    ),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Built-in task to train on."),
    task_option: Optional[List[str]] = typer.Option(
        None, "--task-option", help="key=value passed to the task, e.g. validation_fraction=0 (repeatable)."
    ),
    # None everywhere: a flag given wins over the recipe file, an absent one leaves it alone.
    steps: Optional[int] = typer.Option(None, help="Optimizer steps."),
    batch_size: Optional[int] = typer.Option(None, help="Documents per step."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (linear warm-up, cosine decay)."),
    warmup_steps: Optional[int] = typer.Option(None, help="Warm-up steps."),
    d_model: Optional[int] = typer.Option(None, help="Hidden size."),
    n_layers: Optional[int] = typer.Option(None, help="Transformer blocks."),
    n_heads: Optional[int] = typer.Option(None, help="Attention heads."),
    mlp_hidden_size: Optional[int] = typer.Option(None, help="SwiGLU hidden size."),
    gen_length: Optional[int] = typer.Option(None, help="Answer length incl. EOS padding (default: the task's)."),
    seed: Optional[int] = typer.Option(None, help="Seed for initialisation, masking and batch order."),
    eval_limit: Optional[int] = typer.Option(None, help="Problems of --eval-split scored at the end (0: skip)."),
    eval_split: Optional[str] = typer.Option(None, help="Split scored at the end (default test)."),
    eval_sampler: Optional[List[str]] = typer.Option(
        None, "--eval-sampler", help="Sampler scored at the end with the task's params (repeatable; default: baseline)."
    ),
    eval_every: Optional[int] = typer.Option(None, help="Also score a few validation problems every N steps (0: never)."),
    save_every: Optional[int] = typer.Option(None, help="Resumable checkpoint every N steps (0: only the final model)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    estimate: bool = typer.Option(True, help="Before starting, time 3 training steps and print how long it will take."),
) -> None:
    """Train the built-in LLaDA-style model from scratch (masked-diffusion SFT) and save it.

    Without --config the settings are the shipped `tiny-arith` teacher's (about 2 minutes
    on one GPU; hours on a CPU). configs/pretrain/tiny-arith-cpu.yaml trains a usable
    teacher on 2 CPU cores (times in configs/pretrain/README.md). With save_every set,
    rerunning the same command after a kill continues from the newest checkpoint.

    Example: dpbench pretrain --config configs/pretrain/tiny-arith-cpu.yaml --out runs/teacher-cpu
    """
    from ..train import PretrainConfig  # the trainer (transformers: seconds) loads after the checks

    try:
        cfg = PretrainConfig.from_yaml(config) if config else PretrainConfig()
        options = dict(cfg.task_options)
        for item in task_option or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--task-option expects key=value, got {item!r}")
            options[key.strip()] = _scalar(value.strip())
        cfg = cfg.override(
            task=task, task_options=options, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
            d_model=d_model, n_layers=n_layers, n_heads=n_heads, mlp_hidden_size=mlp_hidden_size,
            gen_length=gen_length, seed=seed, eval_limit=eval_limit, eval_split=eval_split,
            eval_samplers=tuple(eval_sampler) if eval_sampler else None, eval_every=eval_every,
            save_every=save_every, threads=threads, device=device,
        )
        from ..preflight import Problems, check_sampler, check_task

        p = Problems()  # the task and every evaluation sampler, before any training
        t = check_task(p, cfg.task, split=None)
        for name in cfg.eval_samplers:
            check_sampler(p, name, {}, t, what=f"--eval-sampler {name}")
        p.raise_if_any("dpbench pretrain")
        typer.echo(f"pretrain: a {cfg.n_layers}-layer d={cfg.d_model} model on {cfg.task}, {cfg.steps} steps x batch "
                   f"{cfg.batch_size} on {cfg.device}, then {cfg.eval_limit} {cfg.eval_split} problems per evaluation "
                   f"sampler ({', '.join(cfg.eval_samplers)}), into {out}")
        if estimate:
            from ..estimate import estimate_pretrain, fmt_seconds

            typer.echo(f"estimate: about {fmt_seconds(estimate_pretrain(cfg, log=typer.echo))}")
        from ..train import pretrain as run_pretrain

        result = run_pretrain(cfg, out, recipe=str(config) if config else None)
    except ValueError as err:
        raise cli_error(err) from None
    typer.echo(f"saved {result.out_dir} ({result.seconds / 60:.1f} min of training, "
               f"final loss {result.metrics['final_train_loss']:.4f})")
    for name, m in result.metrics.items():
        if isinstance(m, dict):
            typer.echo(f"{name}: accuracy {m['accuracy']:.3f}, mean NFE {m['mean_nfe']:.2f} "
                       f"on {m['n']} {m.get('split', 'test')} problems")


def _scalar(text: str):
    """A task option's value: YAML reads numbers and bools (0 -> int, 0.15 -> float, true -> bool)."""
    import yaml

    return yaml.safe_load(text) if text else text
