"""`pretrain`: train the built-in LLaDA-style architecture from scratch on a built-in task.

The objective is masked-diffusion SFT, as LLaDA's instruction tuning:

* each document is ``prompt + answer``, the answer padded with EOS to a fixed
  ``gen_length`` (the EOS padding is trained too, so the model learns where an
  answer ends and fills later blocks with EOS, as the big models do);
* the prompt is never masked; each answer token is masked independently with
  probability t, one t ~ U(eps, 1) per sample;
* loss = cross-entropy on masked tokens weighted by 1/t, summed and divided by
  the number of answer tokens in the batch (an unbiased estimate of the ELBO).

Everything runs on the CPU in minutes for the tiny configs; the result is an
HF-format checkpoint (``save_pretrained`` + tokenizer) plus a model card.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer
from ..models.llada import count_parameters
from ..tasks import Task, get_task


@dataclass
class PretrainConfig:
    task: str = "arith"
    # Defaults are the shipped tiny-arith teacher's recipe (1.7 min on one H200;
    # on a CPU expect hours: pass fewer --steps / a smaller --batch-size to try it).
    steps: int = 6000
    batch_size: int = 256
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eps: float = 1e-3  # t ~ U(eps, 1): never a zero mask ratio (1/t would blow up)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden_size: int = 384
    gen_length: int | None = None  # None: the task's default gen_length
    seed: int = 0  # model init, masking and batch order (the data has its own seed in the task)
    eval_limit: int = 500  # test documents scored at the end (0: skip)
    eval_samplers: tuple[str, ...] = ("baseline",)  # each scored at the end with the task's params
    eval_every: int = 0  # also score eval_every_limit test docs every N steps (0: never)
    eval_every_limit: int = 100
    eval_batch_size: int = 100
    save_every: int = 0  # write a checkpoint every N steps (0: only at the end)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str = "cpu"

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "d_model", "n_layers", "n_heads", "mlp_hidden_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model / n_heads must be an even integer (RoPE), got {self.d_model} / {self.n_heads}")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


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
    from ..samplers import get_sampler
    from ..textutil import decode_answers

    smp = get_sampler(sampler, **{**task.params_for(sampler), **params})
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
    seconds: float
    model: LLaDAModelLM | None = None


def pretrain(
    cfg: PretrainConfig,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    task: Task | None = None,
) -> PretrainResult:
    """Train a tiny model on ``cfg.task``; save checkpoint + model card to ``out_dir`` (if given).

    ``task`` replaces the registered task of that name (e.g. a smaller ``ArithTask`` in tests).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = torch.device(cfg.device)
    log = log or (lambda msg: tqdm.write(msg))

    task = task if task is not None else get_task(cfg.task)
    tok = build_char_tokenizer()
    gen_length = cfg.gen_length or int(task.default_params.get("gen_length", 64))
    data = encode_docs(task, task.docs("train"), tok, gen_length)
    max_len = max(len(p) for p in data.prompts) + gen_length
    model = build_model(cfg, tok, max_sequence_length=max(256, 2 * max_len)).to(dev)
    lm = DiffusionLM(model, mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id], name=f"pretrain-{cfg.task}")
    eval_params = {"gen_length": gen_length}
    n_params = count_parameters(model)
    log(f"pretrain {cfg.task}: {n_params / 1e6:.2f}M parameters, {len(data.prompts)} training documents, "
        f"gen_length {gen_length}, {cfg.steps} steps x {cfg.batch_size}")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98),
    )
    losses: list[float] = []
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="pretrain", disable=not progress, dynamic_ncols=True)
    for step in bar:
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
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", lr=f"{lr_at(step, cfg):.2e}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            model.eval()
            m = evaluate(lm, tok, task, limit=cfg.eval_every_limit, batch_size=cfg.eval_batch_size, **eval_params)
            history.append({"step": done, "loss": _recent(losses), "accuracy": m["accuracy"], "mean_nfe": m["mean_nfe"],
                            "seconds": round(time.perf_counter() - t0, 1)})
            log(f"step {done}: loss {_recent(losses):.4f}, baseline accuracy {m['accuracy']:.3f} on {m['n']} test docs")
        if out_dir is not None and cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
            save_checkpoint(model, tok, out_dir, _card(cfg, task, n_params, done, time.perf_counter() - t0,
                                                       losses, history, {}))
    train_seconds = time.perf_counter() - t0
    model.eval()

    metrics: dict[str, Any] = {"final_train_loss": _recent(losses)}
    for name in cfg.eval_samplers if cfg.eval_limit else ():
        ev = evaluate(lm, tok, task, name, limit=cfg.eval_limit, batch_size=cfg.eval_batch_size, progress=progress,
                      **eval_params)
        metrics[name] = ev
        log(f"final: {name} accuracy {ev['accuracy']:.3f}, mean NFE {ev['mean_nfe']:.2f} on {ev['n']} test docs")
    card = _card(cfg, task, n_params, cfg.steps, train_seconds, losses, history, metrics)
    path = save_checkpoint(model, tok, out_dir, card) if out_dir is not None else None
    return PretrainResult(path, losses, metrics, train_seconds, model)


def _recent(losses: list[float], n: int = 50) -> float:
    tail = losses[-n:]
    return sum(tail) / max(len(tail), 1)


def _hardware(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads (torch {torch.__version__})"


def _card(cfg, task, n_params, steps_done, seconds, losses, history, metrics) -> dict[str, Any]:
    return {
        "model": "dpbench built-in LLaDA-style masked diffusion LM",
        "task": cfg.task,
        "task_config": task.describe() if hasattr(task, "describe") else {},
        "parameters": n_params,
        "pretrain_config": asdict(cfg),
        "steps_done": steps_done,
        "train_seconds": round(seconds, 1),
        "hardware": _hardware(cfg.device),
        "objective": "masked-diffusion SFT: prompt unmasked, answer masked with t~U(eps,1), CE/t, EOS padding trained",
        "loss_curve": [round(_recent(losses[: i + 1]), 4) for i in range(49, len(losses), 50)],
        "eval_history": history,
        "metrics": metrics,
    }


def save_checkpoint(model: LLaDAModelLM, tokenizer, out_dir: str | Path, card: dict[str, Any]) -> Path:
    """HF checkpoint (safetensors) + tokenizer + ``model_card.json`` and a README."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(_readme(card))
    return out


def _command(cfg: dict[str, Any]) -> str:
    """The `dpbench pretrain` command line for a config (options that differ from the defaults)."""
    defaults = asdict(PretrainConfig())
    parts = [f"dpbench pretrain --task {cfg['task']} --out DIR"]
    for key, value in cfg.items():
        if key in ("task", "eval_every_limit", "eval_batch_size") or value == defaults.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        if key == "eval_samplers":
            parts += [f"--eval-sampler {v}" for v in value]
        elif value is not None:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _readme(card: dict[str, Any]) -> str:
    cfg = card["pretrain_config"]
    lines = [
        f"# dpbench tiny teacher: `{card['task']}`",
        "",
        f"{card['model']}, {card['parameters'] / 1e6:.2f}M parameters "
        f"({cfg['n_layers']} layers, d_model {cfg['d_model']}, {cfg['n_heads']} heads, MLP {cfg['mlp_hidden_size']}), "
        "character-level tokenizer with a chat template.",
        "",
        f"Trained from scratch by `dpbench pretrain --task {card['task']}` with {card['objective']}.",
        "",
        f"- training: {card['steps_done']} steps x batch {cfg['batch_size']}, lr {cfg['lr']} (cosine, warm-up "
        f"{cfg['warmup_steps']}), seed {cfg['seed']}; task data seed {card['task_config'].get('seed')}",
        f"- wall-clock: {card['train_seconds'] / 60:.1f} min on {card['hardware']}",
        f"- final training loss (mean of last 50 steps): {card['metrics'].get('final_train_loss', float('nan')):.4f}",
    ]
    for name, m in card["metrics"].items():
        if isinstance(m, dict) and "accuracy" in m:
            params = ", ".join(f"{k}={m[k]}" for k in ("gen_length", "block_length", "steps", "threshold") if k in m)
            lines.append(f"- `{name}` ({params}): accuracy {m['accuracy']:.3f} on {m['n']} held-out test problems, "
                         f"mean NFE {m['mean_nfe']:.2f}")
    lines += ["", "Reproduce (same library function; the data are generated from the task seed):", "",
              "```", _command(cfg), "```", "",
              "Full configuration, loss curve and metrics: `model_card.json`.", ""]
    return "\n".join(lines)
