"""Model presets and name resolution: which checkpoint a name means (no torch, no transformers).

Kept apart from `loading` so that checking a command's arguments (`dpbench.preflight`) can resolve
model names in milliseconds; `loading.load_model` uses the same table.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class Preset:
    source: str  # hub id or local directory
    family: str  # "llada" | "dream" | "builtin"
    mask_id: int | None = None  # None: read from the tokenizer / config
    eos_token_ids: tuple[int, ...] = ()  # empty: read from the tokenizer
    aliases: tuple[str, ...] = field(default=())
    task: str | None = None  # the task whose sampler defaults `dpbench generate` uses (tiny models)
    # The decoder its authors evaluate it with: (sampler, ((param, value), ...)); docs/models.md lists them.
    recommended: tuple[str, tuple[tuple[str, object], ...]] | None = None


# LLaDA: EOS 126081 (<|endoftext|>) pads the answer; 126348 (<|eot_id|>) ends a turn.
_LLADA_EOS = (126081, 126348)
_D3LLM = (("gen_length", 256), ("block_length", 32), ("block_add_threshold", 0.1), ("decoded_token_threshold", 0.95),
          ("early_stop", True))
PRESETS: dict[str, Preset] = {
    "GSAI-ML/LLaDA-8B-Instruct": Preset("GSAI-ML/LLaDA-8B-Instruct", "llada", 126336, _LLADA_EOS, ("llada",)),
    "GSAI-ML/LLaDA-8B-Base": Preset("GSAI-ML/LLaDA-8B-Base", "llada", 126336, _LLADA_EOS, ("llada-base",)),
    "Zigeng/dParallel-LLaDA-8B-instruct": Preset(
        "Zigeng/dParallel-LLaDA-8B-instruct", "llada", 126336, _LLADA_EOS, ("dparallel-llada",)
    ),
    "Dream-org/Dream-v0-Instruct-7B": Preset("Dream-org/Dream-v0-Instruct-7B", "dream", aliases=("dream",)),
    "Zigeng/dParallel_Dream_7B_Instruct": Preset(
        "Zigeng/dParallel_Dream_7B_Instruct", "dream", aliases=("dparallel-dream",)
    ),
    # d3LLM (hao-ai-lab/d3LLM): distilled for multi-block decoding; settings from its evaluation scripts.
    "d3LLM/d3LLM_LLaDA": Preset("d3LLM/d3LLM_LLaDA", "llada", 126336, _LLADA_EOS, ("d3llm-llada",),
                                recommended=("multiblock", _D3LLM + (("threshold", 0.5),))),
    "d3LLM/d3LLM_Dream": Preset("d3LLM/d3LLM_Dream", "dream", aliases=("d3llm-dream",),
                                recommended=("multiblock", _D3LLM + (("threshold", 0.4),))),
    "d3LLM/d3LLM_Dream_Coder": Preset("d3LLM/d3LLM_Dream_Coder", "dream", aliases=("d3llm-coder", "d3llm-dream-coder"),
                                      recommended=("multiblock", _D3LLM + (("threshold", 0.5),))),
    "tiny-arith": Preset(str(ASSETS / "tiny-arith"), "builtin", task="arith"),
    "tiny-arith-dparallel": Preset(str(ASSETS / "tiny-arith-dparallel"), "builtin", task="arith"),
}
_ALIASES = {alias: name for name, p in PRESETS.items() for alias in p.aliases}


def resolve_source(name_or_path: str) -> tuple[str, Preset | None]:
    name = _ALIASES.get(name_or_path, name_or_path)
    if name in PRESETS:
        return PRESETS[name].source, PRESETS[name]
    if os.path.isdir(name_or_path):
        return name_or_path, None
    if name_or_path.count("/") == 1 and not os.path.exists(name_or_path):
        return name_or_path, None  # a hub id
    close = difflib.get_close_matches(name_or_path, list(PRESETS) + list(_ALIASES), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown model {name_or_path!r}: not a preset, a local directory or a hub id 'org/name'{hint} "
        f"(presets: {', '.join(PRESETS)})"
    )
