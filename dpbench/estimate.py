"""How long will it take? Rough estimates that long commands print before they start.

Measured, not guessed: each planned run's model is loaded once and a small probe
batch (at most 8 problems) is decoded with the run's own sampler; seconds per problem
x (problems + the runner's untimed warm-up batch) + a model load gives the run's
estimate. Scoring, records, manifests, the report and the charts are not in it, nor
later load on a shared machine: on a busy 2-core machine estimates came out 1.5-1.7x
low (docs/runs.md). Training estimates time a few optimizer steps the same way.
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
        secs = per * (run.n + min(PROBE, run.batch_size)) + load_s  # the runner's warm-up batch is decoded too
        total += secs
        log(f"  {run.label}: {run.n} problems x {per:.3f} s = {fmt_seconds(secs)}")
    return total


def _time(fn, repeats: int = 2) -> float:
    """Seconds per call of ``fn`` after one untimed call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def estimate_distill(teacher: str, task, cfg, stages, *, device: str | None = None,
                     log: Callable[[str], None] = print) -> float:
    """Seconds for the trajectories stage (a probe decode with the recipe's teacher sampler) and the train
    stage (one micro-batch's two forwards and backward on the teacher, times micro-batches per step, times
    steps, plus the validation decodes every ``eval_every`` steps, probed on the teacher).

    Training is timed with every weight trainable: a LoRA step is cheaper, so the train estimate leans high.
    Merging takes a model load and a save (seconds to a minute), not estimated.
    """
    import math

    import torch

    from .distill.pipeline import answer_length, decode_params
    from .distill.trajectories import trajectory_docs
    from .models import load_model
    from .samplers import build_sampler

    tc, tr = cfg.trajectories, cfg.train
    lm, tok = load_model(teacher, device=device)
    n = len(trajectory_docs(task, tc.split, tc.limit, tc.distinct))
    total = 0.0
    if "trajectories" in stages and not tc.dataset:
        sampler = build_sampler(tc.sampler, decode_params(task, cfg), task=task)
        per = probe_seconds_per_problem(lm, tok, task, sampler, split=tc.split, batch_size=tc.batch_size)
        total += per * n
        log(f"  trajectories ({tc.sampler}): {n} prompts x {per:.3f} s = {fmt_seconds(per * n)}")
    if "train" in stages:
        steps = tr.max_steps or max(1, math.ceil(tr.epochs * math.ceil(n / tr.batch_size) / tr.grad_accum))
        doc = task.docs(tc.split, 1)[0]
        prompt = tok(task.build_prompt(doc, tok), add_special_tokens=False).input_ids
        length = len(prompt) + answer_length(task, cfg)
        ids = torch.full((tr.batch_size, length), lm.mask_id, dtype=torch.long, device=lm.device)
        module = lm.module
        was_training = module.training
        module.train()

        def step() -> None:
            loss = module(ids).logits.float().mean() + module(ids).logits.float().mean()  # the loss runs two forwards
            loss.backward()
            module.zero_grad(set_to_none=True)

        per = _time(step) * tr.grad_accum
        module.train(was_training)
        total += per * steps
        log(f"  train: {steps} optimizer steps x {tr.grad_accum} micro-batch(es) of {tr.batch_size} = "
            f"{fmt_seconds(per * steps)} (timed with every weight trainable; LoRA is faster)")
        if tr.eval_every:
            evals = steps // tr.eval_every + (1 if steps % tr.eval_every else 0)
            n_eval = len(task.docs(tr.eval_split, tr.eval_limit)) * max(1, len(tr.eval_params))
            sampler = build_sampler(tr.eval_sampler, {**(tr.eval_params or [{}])[0]}, task=task)
            per = probe_seconds_per_problem(lm, tok, task, sampler, split=tr.eval_split, batch_size=tr.eval_batch_size)
            total += per * n_eval * evals
            log(f"  validation: {evals} x {n_eval} {tr.eval_split} problems x {per:.3f} s = "
                f"{fmt_seconds(per * n_eval * evals)} (probed on the teacher; the student needs fewer forwards)")
    return total


def estimate_pretrain(cfg, *, log: Callable[[str], None] = print) -> float:
    """Seconds for `dpbench pretrain`: a 3-step run of the same recipe times the steps, its set-up, and the final
    evaluation (a probe decode of each evaluation sampler with the 3-step model)."""
    from dataclasses import replace

    from .models import DiffusionLM, build_char_tokenizer
    from .samplers import build_sampler
    from .tasks import get_task
    from .train import pretrain

    t0 = time.perf_counter()
    probe = pretrain(replace(cfg, steps=3, warmup_steps=1, eval_limit=0, eval_every=0, save_every=0), None,
                     progress=False, log=lambda _msg: None)
    setup = time.perf_counter() - t0 - probe.seconds
    per_step = probe.seconds / 3
    total = setup + per_step * cfg.steps
    log(f"  training: {cfg.steps} steps x {per_step:.3f} s = {fmt_seconds(per_step * cfg.steps)} "
        f"(+ {fmt_seconds(setup)} to prepare the data)")
    if cfg.eval_limit:
        task, tok = get_task(cfg.task, **cfg.task_options), build_char_tokenizer()
        lm = DiffusionLM(probe.model.eval(), mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id])
        gen = cfg.gen_length or int(task.default_params.get("gen_length", 64))
        for name in cfg.eval_samplers:
            smp = build_sampler(name, {"gen_length": gen}, task=task)
            per = probe_seconds_per_problem(lm, tok, task, smp, batch_size=cfg.eval_batch_size)
            total += per * cfg.eval_limit
            log(f"  final evaluation, {name}: {cfg.eval_limit} problems x {per:.3f} s = {fmt_seconds(per * cfg.eval_limit)}"
                + (" (a trained model needs fewer forwards)" if name != "baseline" else ""))
    return total


__all__ = ["estimate_distill", "estimate_pretrain", "PROBE", "PlannedRun", "estimate_runs", "fmt_seconds", "probe_seconds_per_problem"]
