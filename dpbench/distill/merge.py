"""Stage 3: fold the LoRA adapter into the teacher's weights and save a plain checkpoint.

The result is an ordinary Hugging Face model directory (config, safetensors,
tokenizer) that ``load_model(DIR)`` / ``--model DIR`` loads without peft, plus
a model card (README.md) and ``distill.json`` recording the teacher, the data,
the loss weights and the number of steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..models import load_model
from .train import FINAL, STATE

INFO = "distill.json"


def merge(
    teacher: str,
    train_dir: str | Path,
    out_dir: str | Path,
    *,
    info: dict[str, Any] | None = None,
    dtype: str | torch.dtype | None = None,
    device: str = "cpu",
) -> Path:
    """Merge ``train_dir/final`` (a LoRA adapter, or full weights) into a checkpoint at ``out_dir``."""
    final = Path(train_dir) / FINAL
    if not (final / STATE).exists():
        raise ValueError(f"no finished training in {final}; run the train stage first")
    record = json.loads((final / STATE).read_text())
    if (final / "adapter_config.json").exists():
        from peft import PeftModel

        lm, tok = load_model(teacher, device=device, dtype=dtype)
        module = PeftModel.from_pretrained(lm.module, str(final)).merge_and_unload()
    else:  # full fine-tuning already saved a complete model
        lm, tok = load_model(str(final), device=device, dtype=dtype)
        module = lm.module
    # Keep the teacher's token ids: presets may know EOS ids the tokenizer does not name.
    module.config.mask_token_id = record["mask_id"]
    module.config.eos_token_id = record["eos_token_ids"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {"teacher": teacher, "steps": record["step"], "train_seconds": round(record["seconds"], 1),
            "selected": record.get("selected"),
            "examples": record["examples"], "finetune": record["finetune"], "dpbench_version": __version__,
            "final_metrics": record.get("final_metrics", {}), "config": record["config"], **(info or {})}
    (out / INFO).write_text(json.dumps(meta, indent=2))
    (out / "README.md").write_text(model_card(meta))
    return out


def model_card(meta: dict[str, Any]) -> str:
    cfg = meta["config"]
    tr, lora = cfg["train"], cfg["lora"]
    method = (f"LoRA (r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, "
              f"targets: {', '.join(lora['target_modules'])}), merged" if meta["finetune"] == "lora" else "full fine-tuning")
    data = meta.get("data", {})
    traj = cfg.get("trajectories", {})
    decoder = f"{traj.get('sampler', 'baseline')} {traj.get('params') or ''}".strip()
    prompts = ("every distinct prompt once" if traj.get("distinct") else "every prompt") + (
        f" of the first {traj['limit']} {traj.get('split', 'train')} documents" if traj.get("limit")
        else f" of the {traj.get('split', 'train')} split")
    chosen = meta.get("selected")
    lines = [
        "---",
        "library_name: transformers",
        "tags: [dpbench, diffusion-lm, dparallel, certainty-forcing-distillation]",
        "---",
        f"# {meta.get('name') or 'dParallel-style student'} of {meta['teacher']}",
        "",
        "Produced by `dpbench distill`: certainty-forcing distillation (dParallel, arXiv 2509.26488) "
        "on the teacher's own correct answers.",
        "",
        f"- Teacher: `{meta['teacher']}`",
        f"- Task: `{meta.get('task', '?')}`; data: {data.get('kept', '?')} kept trajectories "
        f"({data.get('rejected', '?')} rejected), source: {data.get('source', '?')}"
        + (f", decoded in {data['seconds']:.0f} s" if "seconds" in data else "")
        + f"; the teacher decoded {prompts} with {decoder}",
        f"- Loss: CE(masked) + CE(masked_rev) + {tr['entropy_weight']} * (H(masked) + H(masked_rev)), "
        f"entropy temperature {tr['temperature']}, mask ratio {tr.get('mask_ratio_range') or tr['mask_ratio']}, block {tr['block_size']}",
        f"- Fine-tuning: {method}",
        f"- Optimisation: {meta['steps']} steps of batch {tr['batch_size']} x {tr['grad_accum']} accumulation, "
        f"AdamW lr {tr['learning_rate']} (warm-up {tr['warmup_steps']}, then constant), weight decay {tr['weight_decay']}",
        f"- Training wall-clock: {meta['train_seconds']} s; {meta['examples']} examples; dpbench {meta['dpbench_version']}",
    ]
    if tr.get("sft_weight"):
        lines.append(f"- Plus {tr['sft_weight']} x the masked-diffusion SFT loss on {tr['sft_data']} data")
    if chosen:
        e = chosen["evals"][0]
        lines.append(f"- Weights chosen on `{tr['eval_split']}`: step {chosen['step']} of {meta['steps']}, the best of "
                     f"the evaluations every {tr['eval_every']} steps ({e['accuracy']:.1%} at {e['mean_nfe']:.2f} NFE "
                     f"with {e['sampler']} {', '.join(f'{k} {v}' for k, v in e.items() if k not in ('sampler', 'n', 'accuracy', 'mean_nfe'))})")
    lines += [
        "",
        "Load it with `dpbench.models.load_model(DIR)` or `--model DIR`; decode it with the `dparallel` sampler.",
        "",
    ]
    return "\n".join(lines)
