"""`dpbench samplers` and `dpbench generate`."""

from __future__ import annotations

import time
from typing import List, Optional

import typer

from .app import app
from .errors import cli_error


def parse_params(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` -> dict; values stay strings and are typed by the sampler registry."""
    from ..params import parse_pairs

    try:
        return parse_pairs(pairs)
    except ValueError as err:
        raise cli_error(err) from None


@app.command()
def samplers() -> None:
    """List registered samplers and their parameters with defaults.

    Example: dpbench samplers
    """
    from ..samplers import available, sampler_class
    from ..samplers.registry import sampler_params

    for name in available():
        cls = sampler_class(name)
        aliases = f" (aliases: {', '.join(cls.aliases)})" if getattr(cls, "aliases", ()) else ""
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        typer.echo(f"{name}{aliases}\n    {doc}")
        params = ", ".join(f"{k}={v!r}" for k, v in sampler_params(name).items())
        typer.echo(f"    params: {params}")
    from ..samplers.kernel import kernel_status

    typer.echo(f"CPU step kernel (built-in samplers at temperature 0, docs/speed.md): {kernel_status()}")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The user message (the chat template is applied if the tokenizer has one)."),
    model: str = typer.Option("tiny-arith", "--model", "-m", help="Preset, local directory or hub id."),
    sampler: str = typer.Option("dparallel", "--sampler", "-s", help="Sampler name (see `dpbench samplers`)."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="Sampler parameter k=v (repeatable)."),
    task: Optional[str] = typer.Option(
        None, "--task", help="Start from this task's sampler defaults (default: the preset's task, e.g. arith for tiny-arith)."
    ),
    device: Optional[str] = typer.Option(None, help="cuda, mps or cpu (default: best available)."),
    dtype: Optional[str] = typer.Option(None, help="bf16, fp16 or fp32 (default: bf16 on GPU, fp32 on CPU)."),
    trust_remote_code: bool = typer.Option(False, help="Use the checkpoint's own modeling code."),
) -> None:
    """Decode one prompt and print the answer, NFE, tokens per forward and seconds.

    Example: dpbench generate "What is 3 + 4 + 5?" --model tiny-arith --sampler dparallel -p threshold=0.5

    Parameters not given come from --task (for the tiny presets: arith, gen 64 / block 16),
    else from the sampler's own defaults (the paper's gen 256 / block 32).
    """
    import torch

    from ..models.presets import resolve_source
    from ..samplers import build_sampler
    from ..tasks import get_task
    from ..textutil import decode_answers

    try:
        task = task or getattr(resolve_source(model)[1], "task", None)
        smp = build_sampler(sampler, parse_params(param), task=get_task(task) if task else None)
        from ..models import load_model  # transformers: only once the arguments are known to be good

        lm, tok = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, verbose=True)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    text = prompt
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    try:
        lm.check_length(ids.shape[1], int(smp.params().get("gen_length", 0)))  # refuse before decoding
    except ValueError as err:
        raise cli_error(err) from None
    t0 = time.perf_counter()
    out = smp.generate(lm, ids)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    (text,), (n_tok,) = decode_answers(tok, out.answers, lm.eos_token_ids)
    nfe = int(out.nfe[0])
    typer.echo(text)
    typer.echo(f"--\nsampler={smp!r}\nnfe={nfe} answer_tokens={n_tok} tokens_per_forward={n_tok / nfe:.2f} seconds={secs:.3f}")
