"""`dpbench bench`: speed side by side (wall-clock, throughput, overhead, memory)."""

from __future__ import annotations

from typing import List, Optional

import typer

from .app import app
from .errors import cli_error
from .core import parse_params


def _list(text: str, cast=str) -> list:
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected a comma-separated list, got {text!r}") from None


@app.command()
def bench(
    model: str = typer.Option("tiny-arith", "--model", "-m", help="Preset, local directory or hub id."),
    sampler: str = typer.Option("dparallel", "--sampler", "-s", help="Sampler name(s), comma-separated."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Sampler parameter k=v (repeatable)."),
    batch_size: str = typer.Option("1", "--batch-size", "-b", help="Batch sizes, comma-separated, e.g. 1,8,32."),
    cache: str = typer.Option("none", "--cache", help="Cache modes, comma-separated: none, prefix, dual, dual+N (dual with N lookahead positions), graph (none, CUDA-graph forward)."),
    step: str = typer.Option(
        "kernel", "--step", help="How a step runs, comma-separated: kernel (the C step kernel on a CPU where it applies), tensor."
    ),
    prompt_tokens: Optional[str] = typer.Option(
        None, "--prompt-tokens", help="Prompt lengths (~tokens, comma-separated): few-shot turns before each problem."
    ),
    prompt_fill: str = typer.Option(
        "fewshot", "--prompt-fill", help="Reach --prompt-tokens with 'fewshot' turns or attention-masked 'pad' tokens."
    ),
    samples: int = typer.Option(32, "--samples", "-n", help="Prompts decoded per combination (after a warm-up batch)."),
    task: str = typer.Option("arith", "--task", help="Task whose test problems are the prompts (and are scored)."),
    out: str = typer.Option("results/bench", "--out", "-o", help="Directory for bench.json, bench.md, bench.png."),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    dtype: Optional[str] = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
) -> None:
    """Measure each sampler x cache x batch size x prompt length after a warm-up, round-robin in one run.

    Example: dpbench bench --model tiny-arith --sampler baseline,dparallel --cache none,prefix,dual --batch-size 1,32 --prompt-tokens 32,512 --samples 64
    """
    import torch

    from ..bench import BenchConfig, run_bench, to_markdown, write_results

    if threads:
        torch.set_num_threads(threads)
    from ..estimate import fmt_seconds
    from ..preflight import check_bench

    try:
        cfg = BenchConfig(
            model=model, samplers=_list(sampler), params=parse_params(param), caches=_list(cache), step_paths=_list(step),
            batch_sizes=_list(batch_size, int), prompt_tokens=_list(prompt_tokens, int) if prompt_tokens else [None],
            prompt_fill=prompt_fill, samples=samples, task=task, device=device, dtype=dtype,
        )
        check_bench(cfg)  # every model, sampler and cache setting, before anything loads
        n = len(cfg.samplers) * len(cfg.caches) * len(cfg.step_paths) * len(cfg.batch_sizes) * len(cfg.prompt_tokens)
        typer.echo(f"bench: {n} combination(s) ({', '.join(cfg.samplers)} x cache {', '.join(cfg.caches)} x step "
                   f"{', '.join(cfg.step_paths)} x batch {', '.join(map(str, cfg.batch_sizes))}), {cfg.samples} {cfg.task} "
                   f"prompts each after one warm-up batch, into {out}")
        # After every round the results so far go to --out: an interrupted bench keeps what it measured.
        result = run_bench(cfg, on_round=lambda partial: write_results(partial, out, with_chart=False),
                           on_estimate=lambda s: typer.echo(f"estimate (from the warm-up batches): about {fmt_seconds(s)}"))
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    paths = write_results(result, out)
    typer.echo(to_markdown(result))
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
