"""`pretrain`: train the built-in LLaDA-style architecture from scratch on a built-in task.

The objective is masked-diffusion SFT, as LLaDA's instruction tuning:

* each document is ``prompt + answer``, the answer padded with EOS to a fixed
  ``gen_length`` (the EOS padding is trained too, so the model learns where an
  answer ends and fills later blocks with EOS, as the big models do);
* the prompt is never masked; each answer token is masked independently with
  probability t, one t ~ U(eps, 1) per sample;
* loss = cross-entropy on masked tokens weighted by 1/t, summed and divided by
  the number of answer tokens in the batch (an unbiased estimate of the ELBO).

The result is an HF-format checkpoint (``save_pretrained`` + tokenizer) plus a
model card; ``save_every`` adds resumable checkpoints (train/checkpoint.py).
configs/pretrain/tiny-arith-cpu.yaml trains a usable arith teacher on 2 CPU cores
(its time and accuracy are in README.md and configs/pretrain/README.md).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer
from ..models.llada import count_parameters
from ..tasks import Task, get_task
from .card import make_card, recent, save_model
from .checkpoint import finished, latest_checkpoint, load_checkpoint, remove_checkpoints, save_resume_checkpoint
from .config import PretrainConfig


# -- data ---------------------------------------------------------------------------
@dataclass
class EncodedData:
    prompts: list[list[int]]  # prompt ids (chat template applied), unpadded
    answers: torch.Tensor  # (N, gen_length): answer ids then EOS padding


def encode_docs(task: Task, docs, tokenizer, gen_length: int) -> EncodedData:
    """Tokenise prompts (task's chat prompt) and answers padded with EOS to ``gen_length``."""
    eos = tokenizer.eos_token_id
    prompts, answers = [], []
    for doc in docs:
        prompts.append(tokenizer(task.build_prompt(doc, tokenizer), add_special_tokens=False).input_ids)
        ans = tokenizer(doc.target, add_special_tokens=False).input_ids
        if len(ans) >= gen_length:
            raise ValueError(
                f"answer of {doc.doc_id} has {len(ans)} tokens; gen_length must exceed it (room for EOS), got {gen_length}"
            )
        answers.append(ans + [eos] * (gen_length - len(ans)))
    return EncodedData(prompts, torch.tensor(answers, dtype=torch.long))


def make_batch(data: EncodedData, idx: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded ``prompt + answer`` rows: (input_ids, attention_mask, prompt_length)."""
    p = max(len(data.prompts[i]) for i in idx)
    rows = [[pad_id] * (p - len(data.prompts[i])) + data.prompts[i] for i in idx]
    prompt = torch.tensor(rows, dtype=torch.long)
    attn = torch.tensor([[0] * (p - len(data.prompts[i])) + [1] * len(data.prompts[i]) for i in idx])
    input_ids = torch.cat([prompt, data.answers[idx]], dim=1)
    attn = torch.cat([attn, torch.ones_like(data.answers[idx])], dim=1)
    return input_ids, attn, p


# -- objective ----------------------------------------------------------------------
def masked_diffusion_loss(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_length: int,
    *,
    mask_id: int,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LLaDA SFT loss on one batch: answer masked with ratio t ~ U(eps, 1), CE / t on masked tokens."""
    b, n = input_ids.shape
    g = n - prompt_length
    # Stratified t over the batch (one uniform offset, evenly spaced) lowers the
    # variance of the estimate without changing its expectation.
    u = (torch.rand(1, generator=generator) + torch.arange(b) / b) % 1.0
    t = eps + (1.0 - eps) * u  # (B,)
    masked = torch.rand(b, g, generator=generator) < t[:, None]
    masked = torch.cat([torch.zeros(b, prompt_length, dtype=torch.bool), masked], dim=1).to(input_ids.device)
    noisy = torch.where(masked, torch.full_like(input_ids, mask_id), input_ids)
    logits = model(noisy, attention_mask=attention_mask).logits
    ce = F.cross_entropy(logits[masked].float(), input_ids[masked], reduction="none")
    weight = (1.0 / t.to(input_ids.device))[:, None].expand(b, n)[masked]
    return (ce * weight).sum() / (b * g)


# -- evaluation ---------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    lm: DiffusionLM,
    tokenizer,
    task: Task,
    sampler: str = "baseline",
    *,
    limit: int | None = 500,
    batch_size: int = 100,
    split: str = "test",
    progress: bool = False,
    **params: Any,
) -> dict[str, float]:
    """Accuracy and mean NFE of ``sampler`` (task defaults, overridden by ``params``) on ``split``."""
    from ..samplers import build_sampler
    from ..textutil import decode_answers

    smp = build_sampler(sampler, params, task=task)  # the task's defaults that sampler takes, then params
    docs = task.docs(split, limit=limit)
    correct, nfe = 0, 0
    tokenizer.padding_side = "left"
    for start in tqdm(range(0, len(docs), batch_size), desc=f"eval {sampler}", disable=not progress, leave=False):
        chunk = docs[start : start + batch_size]
        enc = tokenizer([task.build_prompt(d, tokenizer) for d in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        out = smp.generate(lm, enc.input_ids, enc.attention_mask)
        texts, _ = decode_answers(tokenizer, out.answers, lm.eos_token_ids)
        correct += sum(task.score(d, text).correct for d, text in zip(chunk, texts))
        nfe += int(out.nfe.sum())
    n = len(docs)
    return {"n": n, "accuracy": correct / max(n, 1), "mean_nfe": nfe / max(n, 1), "sampler": sampler, **smp.params()}


# -- training -----------------------------------------------------------------------
def build_model(cfg: PretrainConfig, tokenizer, max_sequence_length: int) -> LLaDAModelLM:
    config = LLaDAConfig(
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        mlp_hidden_size=cfg.mlp_hidden_size,
        vocab_size=len(tokenizer),
        max_sequence_length=max_sequence_length,
        rope_theta=10000.0,
        mask_token_id=tokenizer.mask_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LLaDAModelLM(config)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


@dataclass
class PretrainResult:
    out_dir: Path | None
    losses: list[float]
    metrics: dict[str, Any]
    seconds: float  # training wall-clock, summed over resumed runs
    model: LLaDAModelLM | None = None
    resumed_from: int = 0  # the step a resumed run started at (0: from scratch)
    skipped: bool = False  # out_dir already held the finished model


def pretrain(
    cfg: PretrainConfig,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    task: Task | None = None,
    recipe: str | None = None,
) -> PretrainResult:
    """Train a tiny model on ``cfg.task``; save checkpoint + model card to ``out_dir`` (if given).

    With ``save_every`` a resumable checkpoint (weights, optimizer, RNG states, losses) is written
    every N steps to ``out_dir/checkpoints/``; a rerun with the same settings continues from the
    newest one and ends with the weights an uninterrupted run would have. A finished ``out_dir``
    is not trained again. ``task`` replaces the registered task (e.g. a smaller ``ArithTask``).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log = log or (lambda msg: tqdm.write(msg))
    task = task if task is not None else get_task(cfg.task, **cfg.task_options)
    tok = build_char_tokenizer()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (done := finished(out, cfg)) is not None:
        log(f"{out} already holds the finished model ({done['steps_done']} steps); use a fresh --out to train again")
        model = LLaDAModelLM.from_pretrained(out)
        return PretrainResult(out, [], done["metrics"], done["train_seconds"], model, skipped=True)

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    gen_length = cfg.gen_length or int(task.default_params.get("gen_length", 64))
    data = encode_docs(task, task.docs("train"), tok, gen_length)
    max_len = max(len(p) for p in data.prompts) + gen_length
    model = build_model(cfg, tok, max_sequence_length=max(256, 2 * max_len)).to(dev)
    lm = DiffusionLM(model, mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id], name=f"pretrain-{cfg.task}")
    eval_params = {"gen_length": gen_length}
    n_params = count_parameters(model)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98),
    )
    state = {"step": 0, "seconds": 0.0, "losses": [], "history": []}
    ck = latest_checkpoint(out) if out is not None else None
    if ck is not None:
        state = load_checkpoint(ck, cfg, model, opt, rng, gen)
        log(f"resuming {out} from step {state['step']} of {cfg.steps}")
    else:
        log(f"pretrain {cfg.task}: {n_params / 1e6:.2f}M parameters, {len(data.prompts)} training documents, "
            f"gen_length {gen_length}, {cfg.steps} steps x {cfg.batch_size}")
    start = state["step"]
    losses, history = state["losses"], state["history"]
    t0 = time.perf_counter() - state["seconds"]
    bar = tqdm(total=cfg.steps, initial=start, desc="pretrain", disable=not progress, dynamic_ncols=True)
    for step in range(start, cfg.steps):
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        idx = [rng.randrange(len(data.prompts)) for _ in range(cfg.batch_size)]
        input_ids, attn, p = make_batch(data, idx, tok.pad_token_id)
        loss = masked_diffusion_loss(
            model, input_ids.to(dev), attn.to(dev), p, mask_id=tok.mask_token_id, eps=cfg.eps, generator=gen
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{recent(losses):.4f}", lr=f"{lr_at(step, cfg):.2e}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            model.eval()
            m = evaluate(lm, tok, task, limit=cfg.eval_every_limit, batch_size=cfg.eval_batch_size,
                         split=cfg.eval_every_split, **eval_params)
            history.append({"step": done, "loss": recent(losses), "accuracy": m["accuracy"], "mean_nfe": m["mean_nfe"],
                            "split": cfg.eval_every_split, "seconds": round(time.perf_counter() - t0, 1)})
            log(f"step {done}: loss {recent(losses):.4f}, baseline accuracy {m['accuracy']:.3f} "
                f"on {m['n']} {cfg.eval_every_split} docs")
        if out is not None and cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
            state.update(step=done, seconds=time.perf_counter() - t0)
            save_resume_checkpoint(out, cfg, state, model, opt, rng, gen)
    bar.close()
    train_seconds = time.perf_counter() - t0
    model.eval()

    t_eval = time.perf_counter()
    metrics: dict[str, Any] = {"final_train_loss": recent(losses)}
    for name in cfg.eval_samplers if cfg.eval_limit else ():
        ev = evaluate(lm, tok, task, name, limit=cfg.eval_limit, batch_size=cfg.eval_batch_size, progress=progress,
                      split=cfg.eval_split, **eval_params)
        metrics[name] = {**ev, "split": cfg.eval_split}
        log(f"final: {name} accuracy {ev['accuracy']:.3f}, mean NFE {ev['mean_nfe']:.2f} on {ev['n']} {cfg.eval_split} docs")
    card = make_card(cfg, task, n_params, cfg.steps, train_seconds, losses, history, metrics, recipe=recipe,
                     complete=True, eval_seconds=time.perf_counter() - t_eval)
    path = None
    if out is not None:
        path = save_model(model, tok, out, card)
        remove_checkpoints(out)  # the finished model replaces them
    return PretrainResult(path, losses, metrics, train_seconds, model, resumed_from=start)
