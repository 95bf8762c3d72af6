"""The pretrained model's directory: HF checkpoint, tokenizer, ``model_card.json`` and a README."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..models import LLaDAModelLM
from .config import PretrainConfig

CARD = "model_card.json"
OBJECTIVE = "masked-diffusion SFT: prompt unmasked, answer masked with t~U(eps,1), CE/t, EOS padding trained"


def recent(losses: list[float], n: int = 50) -> float:
    tail = losses[-n:]
    return sum(tail) / max(len(tail), 1)


def hardware(device: str) -> str:
    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads (torch {torch.__version__})"


def make_card(cfg: PretrainConfig, task, n_params: int, steps_done: int, seconds: float, losses: list[float],
              history: list[dict[str, Any]], metrics: dict[str, Any], *, recipe: str | None = None,
              complete: bool = False, eval_seconds: float | None = None) -> dict[str, Any]:
    return {
        "model": "dpbench built-in LLaDA-style masked diffusion LM",
        "task": cfg.task,
        "task_config": task.describe() if hasattr(task, "describe") else {},
        "parameters": n_params,
        "pretrain_config": asdict(cfg),
        "recipe": recipe,
        "complete": complete,
        "steps_done": steps_done,
        "train_seconds": round(seconds, 1),
        "eval_seconds": None if eval_seconds is None else round(eval_seconds, 1),
        "hardware": hardware(cfg.device),
        "objective": OBJECTIVE,
        "loss_curve": [round(recent(losses[: i + 1]), 4) for i in range(49, len(losses), 50)],
        "eval_history": history,
        "metrics": metrics,
    }


def save_model(model: LLaDAModelLM, tokenizer, out_dir: str | Path, card: dict[str, Any]) -> Path:
    """HF checkpoint (safetensors) + tokenizer + ``model_card.json`` and a README."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # The card goes last: a directory with a complete card holds a complete model.
    (out / "README.md").write_text(readme(card))
    tmp = out / f".{CARD}.tmp"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(out / CARD)
    return out


def command(cfg: dict[str, Any], recipe: str | None = None) -> str:
    """The `dpbench pretrain` command line for a config: the recipe file, then what differs from it."""
    base = asdict(PretrainConfig.from_yaml(recipe)) if recipe and Path(recipe).is_file() else asdict(PretrainConfig())
    parts = ["dpbench pretrain" + (f" --config {recipe}" if recipe else f" --task {cfg['task']}") + " --out DIR"]
    for key, value in cfg.items():
        if key in ("eval_every_limit", "eval_batch_size") or value == base.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        if key == "eval_samplers":
            parts += [f"--eval-sampler {v}" for v in value]
        elif key == "task_options":
            parts += [f"--task-option {k}={v}" for k, v in value.items()]
        elif value is not None:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def readme(card: dict[str, Any]) -> str:
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
        f"{cfg['warmup_steps']}), seed {cfg['seed']}; task data seed {card['task_config'].get('seed')}"
        + (f", task options {cfg['task_options']}" if cfg.get("task_options") else ""),
        f"- wall-clock: {card['train_seconds'] / 60:.1f} min of training on {card['hardware']}"
        + (f", then {card['eval_seconds'] / 60:.1f} min of evaluation" if card.get("eval_seconds") is not None else ""),
        f"- final training loss (mean of last 50 steps): {card['metrics'].get('final_train_loss', float('nan')):.4f}",
    ]
    for name, m in card["metrics"].items():
        if isinstance(m, dict) and "accuracy" in m:
            params = ", ".join(f"{k}={m[k]}" for k in ("gen_length", "block_length", "steps", "threshold") if k in m)
            lines.append(f"- `{name}` ({params}): accuracy {m['accuracy']:.3f} on {m['n']} {m.get('split', 'test')} "
                         f"problems, mean NFE {m['mean_nfe']:.2f}")
    lines += ["", "Reproduce (the data are generated from the task seed):", "",
              "```", command(cfg, card.get("recipe")), "```", "",
              "Full configuration, loss curve and metrics: `model_card.json`.", ""]
    return "\n".join(lines)
