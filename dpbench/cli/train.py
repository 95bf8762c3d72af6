"""`dpbench pretrain`: train the built-in tiny model on a built-in task."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .errors import cli_error


@app.command()
def pretrain(
    task: str = typer.Option("arith", "--task", "-t", help="Built-in task to train on."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the HF checkpoint and model card."),
    # Defaults mirror PretrainConfig (the shipped teacher's recipe); a test checks they agree.
    steps: int = typer.Option(6000, help="Optimizer steps."),
    batch_size: int = typer.Option(256, help="Documents per step."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (linear warm-up, cosine decay)."),
    warmup_steps: int = typer.Option(200, help="Warm-up steps."),
    d_model: int = typer.Option(128, help="Hidden size."),
    n_layers: int = typer.Option(4, help="Transformer blocks."),
    n_heads: int = typer.Option(4, help="Attention heads."),
    mlp_hidden_size: int = typer.Option(384, help="SwiGLU hidden size."),
    gen_length: Optional[int] = typer.Option(None, help="Answer length incl. EOS padding (default: the task's)."),
    seed: int = typer.Option(0, help="Seed for initialisation, masking and batch order."),
    eval_limit: int = typer.Option(500, help="Test problems scored with the baseline sampler at the end (0: skip)."),
    eval_sampler: Optional[List[str]] = typer.Option(
        None, "--eval-sampler", help="Sampler scored at the end with the task's params (repeatable; default: baseline)."
    ),
    eval_every: int = typer.Option(0, help="Also score a few test problems every N steps (0: never)."),
    save_every: int = typer.Option(0, help="Write a checkpoint every N steps (0: only at the end)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    estimate: bool = typer.Option(True, help="Before starting, time 3 training steps and print how long it will take."),
) -> None:
    """Train the built-in LLaDA-style model from scratch (masked-diffusion SFT) and save it.

    The defaults are the recipe of the shipped `tiny-arith` teacher (about 2 minutes
    on one GPU; hours on a CPU). A quick CPU try: --steps 300 --batch-size 32 --eval-limit 50.

    Example: dpbench pretrain --task arith --out runs/tiny-arith --device cuda --eval-sampler baseline --eval-sampler dparallel
    """
    from ..train import PretrainConfig
    from ..train import pretrain as run_pretrain

    try:
        cfg = PretrainConfig(
            task=task, steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps, d_model=d_model,
            n_layers=n_layers, n_heads=n_heads, mlp_hidden_size=mlp_hidden_size, gen_length=gen_length, seed=seed,
            eval_limit=eval_limit, eval_samplers=tuple(eval_sampler or ("baseline",)), eval_every=eval_every, save_every=save_every, threads=threads, device=device,
        )
        from ..preflight import Problems, check_sampler, check_task

        p = Problems()  # the task and every evaluation sampler, before any training
        t = check_task(p, task, split=None)
        for name in cfg.eval_samplers:
            check_sampler(p, name, {}, t, what=f"--eval-sampler {name}")
        p.raise_if_any("dpbench pretrain")
        typer.echo(f"pretrain: a {n_layers}-layer d={d_model} model on {task}, {steps} steps x batch {batch_size} on {device}, "
                   f"then {eval_limit} test problems per evaluation sampler ({', '.join(cfg.eval_samplers)}), into {out}")
        if estimate:
            from ..estimate import estimate_pretrain, fmt_seconds

            typer.echo(f"estimate: about {fmt_seconds(estimate_pretrain(cfg, log=typer.echo))}")
        result = run_pretrain(cfg, out)
    except ValueError as err:
        raise cli_error(err) from None
    typer.echo(f"saved {result.out_dir} ({result.seconds / 60:.1f} min, final loss {result.metrics['final_train_loss']:.4f})")
    for name, m in result.metrics.items():
        if isinstance(m, dict):
            typer.echo(f"{name}: accuracy {m['accuracy']:.3f}, mean NFE {m['mean_nfe']:.2f} on {m['n']} test problems")
