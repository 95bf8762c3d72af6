"""Distillation settings: dataclasses loaded from YAML and validated.

Defaults are the paper's (LLaDA-8B-Instruct: mask ratio 0.5, block 32,
temperature 0.5, entropy weight 2.0, lr 2e-5 constant, LoRA r = alpha = 128,
batch 1 x 8 accumulation, 6 epochs, weight decay 0.01, grad-norm clip 1).
A YAML file overrides any of them; unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .schema import build

# LLaDA's real projection names (see MODELS.md). The reference config listed
# o_proj/gate_proj/down_proj instead, which LLaDA does not have, so peft
# silently adapted only q/k/v/up.
LLADA_TARGETS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")
FINETUNE = ("lora", "full")
DTYPES = ("auto", "bf16", "fp16", "fp32")


@dataclass
class TrajectoryConfig:
    split: str = "train"
    limit: int | None = None  # first N training documents (None: all)
    batch_size: int = 16
    sampler: str = "baseline"  # the teacher's decoder (the paper: baseline, full steps)
    params: dict[str, Any] = field(default_factory=dict)  # sampler overrides; default: the task's params
    distinct: bool = False  # decode each distinct prompt once (a greedy teacher repeats itself)
    seed: int = 0  # for samplers with temperature > 0
    dataset: str | None = None  # an existing dataset (JSONL / HF dataset dir) with question, llm_response

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"trajectories.limit must be >= 1 or null, got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"trajectories.batch_size must be >= 1, got {self.batch_size}")
        from ..samplers.registry import sampler_params

        valid = sampler_params(self.sampler)  # an unknown sampler name raises here, naming the valid ones
        unknown = sorted(set(self.params) - set(valid))
        if unknown:
            raise ValueError(f"trajectories.params: unknown parameter(s) {', '.join(unknown)} for sampler "
                             f"{self.sampler!r}; valid: {', '.join(valid)}")


@dataclass
class TrainConfig:
    finetune: str = "lora"  # lora | full (full fine-tuning is for tiny models)
    mask_ratio: float = 0.5
    # [lo, hi]: each sample draws its mask ratio uniformly from this range instead (null: the
    # paper's fixed mask_ratio). dpbench's tiny recipe uses it to show fully masked blocks too.
    mask_ratio_range: list[float] | None = None
    block_size: int = 32  # should equal the sampler's block_length
    temperature: float = 0.5
    entropy_weight: float = 2.0
    learning_rate: float = 2e-5
    warmup_steps: int = 0  # then constant
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    epochs: float = 6.0
    max_steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 1  # per device, per micro-batch
    grad_accum: int = 8
    gen_length: int | None = None  # answer region (EOS-padded); None: the task's gen_length
    save_every: int = 200  # optimizer steps between checkpoints
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    dtype: str = "auto"  # auto: bf16 weights for LoRA on GPU, fp32 otherwise; bf16 autocast on GPU

    def validate(self) -> None:
        if self.finetune not in FINETUNE:
            raise ValueError(f"train.finetune must be one of {', '.join(FINETUNE)}, got {self.finetune!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"train.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"train.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        r = self.mask_ratio_range
        if r is not None and not (len(r) == 2 and 0 <= r[0] < r[1] <= 1):
            raise ValueError(f"train.mask_ratio_range must be [lo, hi] with 0 <= lo < hi <= 1, or null, got {r}")
        if self.temperature <= 0:
            raise ValueError(f"train.temperature must be > 0, got {self.temperature}")
        if self.entropy_weight < 0:
            raise ValueError(f"train.entropy_weight must be >= 0 (0 = plain trajectory distillation), got {self.entropy_weight}")
        if self.learning_rate <= 0:
            raise ValueError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("block_size", "batch_size", "grad_accum", "save_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError(f"train.epochs must be > 0 when max_steps is null, got {self.epochs}")
        if self.gen_length is not None and self.gen_length % self.block_size:
            raise ValueError(f"train.gen_length ({self.gen_length}) must be a multiple of train.block_size, got {self.block_size}")


@dataclass
class LoraSettings:
    r: int = 128
    alpha: int = 128
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LLADA_TARGETS))

    def validate(self) -> None:
        if self.r < 1 or self.alpha <= 0:
            raise ValueError(f"lora.r and lora.alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module")


@dataclass
class DistillConfig:
    teacher: str | None = None  # the CLI's --teacher wins
    task: str | None = None  # the CLI's --task wins
    threads: int | None = None  # torch CPU threads for every stage (None: torch's default)
    trajectories: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def validate(self) -> DistillConfig:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        self.trajectories.validate()
        self.train.validate()
        self.lora.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DistillConfig:
        return build(cls, data or {}, "").validate()

    @classmethod
    def from_yaml(cls, path: str | Path) -> DistillConfig:
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        return cls.from_dict(data)

    def override(self, section: str, **values: Any) -> DistillConfig:
        """Return a copy with ``section.key = value`` for each value that is not None."""
        sub = getattr(self, section)
        kept = {k: v for k, v in values.items() if v is not None}
        merged = build(type(sub), {**dataclasses.asdict(sub), **kept}, section + ".")
        return dataclasses.replace(self, **{section: merged}).validate()
