"""Stage 2: certainty-forcing training on the teacher's trajectories.

Each example is ``prompt + response + EOS`` with the answer EOS-padded to the
decoding length, prompts left-padded so every answer starts at the same column
(exactly the layout the samplers decode). Per micro-batch: `semi_ar_masks`,
two forwards (``noisy`` and ``noisy_rev``), `certainty_forcing_terms`.

LoRA goes through peft (targets checked against the model's real module
names), or every weight is trained (``finetune: full``, for tiny models). The
loop is plain PyTorch under an `accelerate.Accelerator`, so
``accelerate launch`` runs it data-parallel (DeepSpeed ZeRO-2 included, see
docs/distill.md); bf16 autocast on GPU. Checkpoints hold the trainable weights,
the optimizer and the step; a rerun resumes from the newest one and draws the
same batches and masks as an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..models.adapter import DiffusionLM
from .config import DistillConfig, TrainConfig
from .loss import certainty_forcing_terms
from .masking import semi_ar_masks
from .monitor import Validator
from .trajectories import encode_prompt

FINAL, LOG, STATE = "final", "log.jsonl", "train_state.json"


# ---------------------------------------------------------------- data


@dataclass
class Example:
    prompt: list[int]
    answer: list[int]  # response + EOS, padded with EOS to gen_length


def build_examples(rows: list[dict[str, Any]], tokenizer, *, gen_length: int, eos_id: int) -> tuple[list[Example], int]:
    """Tokenize trajectory rows; returns the examples and how many responses were cut to fit gen_length."""
    examples, cut = [], 0
    for r in rows:
        prompt = encode_prompt(tokenizer, r.get("prompt") or r["question"])
        answer = tokenizer(r["llm_response"], add_special_tokens=False).input_ids + [eos_id]
        if len(answer) > gen_length:
            answer, cut = answer[:gen_length], cut + 1
        examples.append(Example(prompt, answer + [eos_id] * (gen_length - len(answer))))
    return examples, cut


def collate(batch: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Left-pad prompts: (input_ids (B, P+G), attention_mask or None, prompt_lengths (B,) = P)."""
    P = max(len(e.prompt) for e in batch)
    G = len(batch[0].answer)
    ids = torch.full((len(batch), P + G), pad_id, dtype=torch.long)
    attn = torch.ones_like(ids)
    for i, e in enumerate(batch):
        ids[i, P - len(e.prompt) : P] = torch.tensor(e.prompt, dtype=torch.long)
        ids[i, P:] = torch.tensor(e.answer, dtype=torch.long)
        attn[i, : P - len(e.prompt)] = 0
    return ids, (None if bool(attn.all()) else attn), torch.full((len(batch),), P, dtype=torch.long)


# ---------------------------------------------------------------- model


_LORA_TYPES = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)


def check_lora_targets(module: nn.Module, targets: list[str]) -> None:
    """Refuse a target name that matches no layer (peft matches a name as a suffix of the module path).

    peft only fails when *no* target matches; a misspelt name among good ones is
    silently ignored, which is how the reference LLaDA config lost attn_out,
    ff_proj and ff_out.
    """
    names = [n for n, m in module.named_modules() if isinstance(m, _LORA_TYPES)]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(
            f"LoRA target module(s) {', '.join(missing)} match no layer of {type(module).__name__}; "
            f"its layer names are: {', '.join(leaves)}"
        )


def make_student(module: nn.Module, cfg: DistillConfig) -> nn.Module:
    """Wrap ``module`` with LoRA adapters, or make every weight trainable (full fine-tuning)."""
    if cfg.train.finetune == "full":
        for p in module.parameters():
            p.requires_grad_(True)
        return module
    from peft import LoraConfig, get_peft_model

    check_lora_targets(module, cfg.lora.target_modules)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), bias="none")
    return get_peft_model(module, lora)


def weight_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    """auto: bf16 base weights for LoRA on a GPU (as the paper), fp32 master weights otherwise."""
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and cfg.finetune == "lora" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.dtype]


# ---------------------------------------------------------------- checkpoints


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _checkpoints(out: Path) -> list[Path]:
    cks = [p for p in out.glob("checkpoint-*") if (p / STATE).exists()]
    return sorted(cks, key=lambda p: int(p.name.split("-")[1]))


def _save_checkpoint(out: Path, model: nn.Module, opt, sched, state: dict[str, Any], keep: int) -> None:
    from safetensors.torch import save_file

    ck = out / f"checkpoint-{state['step']}"
    tmp = out / f".tmp-{ck.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable(model), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": opt.state_dict() if opt is not None else None, "scheduler": sched.state_dict()},
               tmp / "optimizer.pt")
    (tmp / STATE).write_text(json.dumps(state, indent=2))
    shutil.rmtree(ck, ignore_errors=True)
    tmp.rename(ck)  # a checkpoint directory either is complete or does not exist
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(ck: Path, model: nn.Module, opt, sched) -> dict[str, Any]:
    from safetensors.torch import load_file

    weights = load_file(str(ck / "trainable.safetensors"))
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{ck} does not fit this model (unexpected {result.unexpected_keys[:3]}...); use a fresh --out")
    opt_state = torch.load(ck / "optimizer.pt", map_location="cpu", weights_only=False)
    if opt is not None and opt_state["optimizer"] is not None:
        opt.load_state_dict(opt_state["optimizer"])
    sched.load_state_dict(opt_state["scheduler"])
    return json.loads((ck / STATE).read_text())


# ---------------------------------------------------------------- loop


@dataclass
class TrainResult:
    steps: int
    seconds: float  # training wall-clock, summed over resumed runs
    final_dir: str
    metrics: dict[str, float]  # means over the last logging interval


def train_done(out_dir: str | Path) -> bool:
    return (Path(out_dir) / FINAL / STATE).exists()


def train(
    lm: DiffusionLM,
    tokenizer,
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    cfg: DistillConfig,
    *,
    gen_length: int,
    accelerator=None,
    progress: bool = True,
    task=None,
) -> TrainResult:
    """Fine-tune ``lm.module`` in place on trajectory ``rows``; write checkpoints and ``final/`` to ``out_dir``.

    ``task`` is needed for validation during training (``train.eval_every``) and for
    ``train.sft_data: task``."""
    from accelerate import Accelerator

    tc = cfg.train
    if gen_length % tc.block_size:
        raise ValueError(f"gen_length ({gen_length}) must be a multiple of train.block_size, got {tc.block_size}")
    acc = accelerator or Accelerator(cpu=lm.device.type == "cpu", gradient_accumulation_steps=tc.grad_accum)
    out = Path(out_dir)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    examples, cut = build_examples(rows, tokenizer, gen_length=gen_length, eos_id=lm.eos_id)
    if cut and acc.is_main_process:
        print(f"warning: {cut} of {len(examples)} responses were longer than gen_length={gen_length} and were cut")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else lm.eos_id
    sft = sft_examples(task, tokenizer, tc, examples, gen_length, lm.eos_id) if tc.sft_weight > 0 else []

    model = make_student(lm.module, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": tc.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=tc.learning_rate)
    n_batches = math.ceil(len(examples) / tc.batch_size)
    world = acc.num_processes
    total = tc.max_steps or max(1, math.ceil(tc.epochs * n_batches / (tc.grad_accum * world)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc, total))
    model, opt = acc.prepare(model, opt)
    if acc.gradient_accumulation_steps != tc.grad_accum:  # DeepSpeed's config wins inside accelerate
        raise ValueError(f"the accelerate/DeepSpeed config accumulates {acc.gradient_accumulation_steps} micro-batches "
                         f"but train.grad_accum is {tc.grad_accum}; make them equal")
    student = DiffusionLM(model, mask_id=lm.mask_id, eos_token_ids=lm.eos_token_ids, shift_logits=lm.shift_logits)
    # Under DeepSpeed each rank holds a shard of the optimizer state: checkpoints keep weights and step only.
    with_opt = acc.distributed_type != "DEEPSPEED"

    rank = acc.process_index
    state = {"step": 0, "seconds": 0.0}
    validator = Validator(task, tokenizer, tc, out, gen_length) if tc.eval_every else None
    cks = _checkpoints(out)
    if cks:
        state = _load_checkpoint(cks[-1], acc.unwrap_model(model), opt if with_opt else None, sched)
        if validator is not None:
            validator.restore(state.get("best"))
        if acc.is_main_process:
            print(f"resuming from {cks[-1]} (step {state['step']} of {total})")

    orders: dict[int, torch.Tensor] = {}

    def micro_batch(m: int) -> list[Example]:
        epoch, b = divmod(m, n_batches)
        if epoch not in orders:  # the same shuffle on every rank and on resume
            orders.clear()
            orders[epoch] = torch.randperm(len(examples), generator=torch.Generator().manual_seed(tc.seed + 7919 * epoch))
        idx = orders[epoch][b * tc.batch_size : (b + 1) * tc.batch_size]
        return [examples[i] for i in idx.tolist()]

    log_f = open(out / LOG, "a") if acc.is_main_process else None
    bar = tqdm(total=total, initial=state["step"], desc="distill", disable=not (progress and acc.is_main_process))
    window: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    t_start = time.perf_counter() - state["seconds"]
    while state["step"] < total:
        step_terms = []
        for a in range(tc.grad_accum):
            # Micro-batch m of the global stream; rank r takes every world-th one.
            m = (state["step"] * tc.grad_accum + a) * world + rank
            ids, attn, plen = collate(micro_batch(m), pad_id)
            ids = ids.to(acc.device)
            attn = attn.to(acc.device) if attn is not None else None
            gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + m)
            ratio = tc.mask_ratio
            if tc.mask_ratio_range is not None:
                lo, hi = tc.mask_ratio_range
                ratio = lo + (hi - lo) * torch.rand(ids.shape[0], generator=gen)
            noisy, noisy_rev, masked, masked_rev = semi_ar_masks(
                ids, plen, mask_id=lm.mask_id, block_size=tc.block_size, mask_ratio=ratio, generator=gen)
            # accumulate(): gradients sync (and the optimizer steps) on every grad_accum-th micro-batch only.
            with acc.accumulate(model):
                with acc.autocast():
                    terms = certainty_forcing_terms(
                        student.logits(noisy, attn), student.logits(noisy_rev, attn), ids, masked, masked_rev,
                        temperature=tc.temperature, entropy_weight=tc.entropy_weight)
                    loss, extra = terms.loss, {}
                    if sft:
                        sft_loss = sft_term(model, sft, m, tc, pad_id, lm.mask_id, acc.device)
                        loss, extra = loss + tc.sft_weight * sft_loss, {"sft": float(sft_loss.detach())}
                acc.backward(loss)
                if acc.sync_gradients and tc.max_grad_norm > 0:
                    acc.clip_grad_norm_(params, tc.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            step_terms.append(terms.as_floats() | extra)
        if not acc.sync_gradients:
            raise RuntimeError("accelerate did not end the accumulation window with the step; this is a dpbench bug")
        sched.step()
        state["step"] += 1
        state["seconds"] = time.perf_counter() - t_start
        n_masked = sum(t["n_masked"] for t in step_terms)
        window.append({k: sum(t[k] for t in step_terms) / len(step_terms) for k in ("loss", "ce", "entropy")
                       + (("sft",) if sft else ())}
                      | {"correct_frac": sum(t["n_correct"] for t in step_terms) / max(1, n_masked)})
        bar.update(1)
        bar.set_postfix(ce=f"{window[-1]['ce']:.3f}", ent=f"{window[-1]['entropy']:.3f}")
        if state["step"] % tc.log_every == 0 or state["step"] == total:
            metrics = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            window = []
            if log_f:
                log_f.write(json.dumps({"step": state["step"], "seconds": round(state["seconds"], 2),
                                        "lr": sched.get_last_lr()[0], **metrics}) + "\n")
                log_f.flush()
        if validator is not None and (state["step"] % tc.eval_every == 0 or state["step"] == total):
            if acc.is_main_process:
                # The unwrapped module: a DDP forward on one rank alone would wait for the others.
                evals = validator.evaluate(DiffusionLM(acc.unwrap_model(model), mask_id=lm.mask_id,
                                                       eos_token_ids=lm.eos_token_ids, shift_logits=lm.shift_logits))
                better = validator.consider(state["step"], evals, _trainable(acc.unwrap_model(model)))
                state["best"] = validator.best
                bar.write(f"step {state['step']}: " + "; ".join(
                    f"{e['accuracy']:.1%} at {e['mean_nfe']:.2f} NFE ({_params(e)})" for e in evals)
                    + (" <- best" if better else ""))
                if log_f:
                    log_f.write(json.dumps({"step": state["step"], "eval": evals, "best": better}) + "\n")
                    log_f.flush()
            acc.wait_for_everyone()
        # The last step is checkpointed too, so a longer run (larger max_steps) continues from it.
        if (state["step"] % tc.save_every == 0 or state["step"] == total) and acc.is_main_process:
            _save_checkpoint(out, acc.unwrap_model(model), opt if with_opt else None, sched, dict(state),
                             tc.keep_checkpoints)
        acc.wait_for_everyone()
    bar.close()
    if log_f:
        log_f.close()

    final = out / FINAL
    if acc.is_main_process:
        chosen = validator.load_best(acc.unwrap_model(model)) if validator is not None else None
        if chosen is not None:
            print(f"final: the step-{chosen['step']} weights, best on {tc.eval_split} "
                  f"({chosen['evals'][0]['accuracy']:.1%} at {chosen['evals'][0]['mean_nfe']:.2f} NFE)")
        _save_final(acc.unwrap_model(model), tokenizer, lm, final, cfg, state, len(examples), metrics, chosen)
    acc.wait_for_everyone()
    return TrainResult(steps=state["step"], seconds=state["seconds"], final_dir=str(final), metrics=metrics)


def _save_final(model: nn.Module, tokenizer, lm: DiffusionLM, final: Path, cfg: DistillConfig,
                state: dict[str, Any], n_examples: int, metrics: dict[str, float],
                chosen: dict[str, Any] | None = None) -> None:
    """LoRA: the adapter (peft format). Full: a complete model directory. Plus the training record."""
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    model.save_pretrained(final)
    if cfg.train.finetune == "full":
        tokenizer.save_pretrained(final)
    record = {"step": state["step"], "seconds": state["seconds"], "examples": n_examples, "finetune": cfg.train.finetune,
              "mask_id": lm.mask_id, "eos_token_ids": list(lm.eos_token_ids), "final_metrics": metrics,
              "selected": chosen, "config": cfg.to_dict()}
    (final / STATE).write_text(json.dumps(record, indent=2))


def lr_factor(step: int, tc: TrainConfig, total: int) -> float:
    """Linear warm-up, then constant (the paper), or a cosine / linear decay to 0 at ``total``."""
    if step < tc.warmup_steps:
        return (step + 1) / (tc.warmup_steps + 1)
    if tc.lr_decay == "none":
        return 1.0
    frac = min(1.0, (step - tc.warmup_steps) / max(1, total - tc.warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * frac)) if tc.lr_decay == "cosine" else 1.0 - frac


def _params(e: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("n", "accuracy", "mean_nfe"))


def sft_examples(task, tokenizer, tc: TrainConfig, examples: list[Example], gen_length: int,
                 eos_id: int) -> list[Example]:
    """The data of the SFT term: the task's training documents (gold solutions) or the trajectories."""
    if tc.sft_data == "trajectories":
        return examples
    if task is None:
        raise ValueError("train.sft_data: task needs the task (pass task= to train())")
    rows = [{"prompt": task.build_prompt(d, tokenizer), "llm_response": d.target} for d in task.docs("train")]
    sft, cut = build_examples(rows, tokenizer, gen_length=gen_length, eos_id=eos_id)
    if cut:
        raise ValueError(f"{cut} training solutions of {task.name} are longer than gen_length={gen_length}")
    return sft


def sft_term(model: nn.Module, sft: list[Example], m: int, tc: TrainConfig, pad_id: int, mask_id: int,
             device) -> torch.Tensor:
    """The teacher's objective on micro-batch ``m``'s own draw of SFT examples (the same on resume)."""
    from ..train.pretrain import masked_diffusion_loss

    gen = torch.Generator().manual_seed(tc.seed * 1_000_033 + 7 * m + 1)
    idx = torch.randint(len(sft), (tc.batch_size,), generator=gen).tolist()
    ids, attn, plen = collate([sft[i] for i in idx], pad_id)
    return masked_diffusion_loss(model, ids.to(device), None if attn is None else attn.to(device), int(plen[0]),
                                 mask_id=mask_id, generator=gen)
