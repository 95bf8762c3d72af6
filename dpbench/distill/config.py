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
SFT_DATA = ("task", "trajectories")
LR_DECAY = ("none", "cosine", "linear")
SECTIONS = ("trajectories", "train", "lora")  # merged key by key under ``extends``


@dataclass
class TrajectoryConfig:
    split: str = "train"
    limit: int | None = None  # first N training documents (None: all)
    batch_size: int = 16
    sampler: str = "baseline"  # the teacher's decoder (the paper: baseline, full steps)
    params: dict[str, Any] = field(default_factory=dict)  # sampler overrides; default: the task's params
    distinct: bool = False  # decode each distinct prompt once (a greedy teacher repeats itself)
    seed: int = 0  # for samplers with temperature > 0
    # Train only on answers whose every step the task verifies (arith: each addition right, the
    # problem's own numbers), not only the final answer; applied when the train stage reads the data.
    verify: bool = False
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
    warmup_steps: int = 0  # then constant (the paper), or lr_decay
    lr_decay: str = "none"  # none | cosine | linear (to 0 at the last step)
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
    # Keep some of the teacher's own objective: + sft_weight * the masked-diffusion SFT loss (the
    # pretraining loss, answer masked with t ~ U(0, 1), CE / t) on a batch of sft_data per micro-batch:
    # "task" (the task's training documents, gold solutions) or "trajectories" (the teacher's answers).
    sft_weight: float = 0.0
    sft_data: str = "task"
    # Validation during training (distill/monitor.py): every eval_every steps (0: never), the student
    # decodes eval_limit problems of eval_split with eval_sampler at each of eval_params.
    eval_every: int = 0
    eval_split: str = "validation"
    eval_limit: int | None = 500
    eval_sampler: str = "dparallel"
    eval_params: list[dict[str, Any]] = field(default_factory=list)  # []: the task's defaults
    eval_batch_size: int = 100
    select_best: bool = False  # final/ = the evaluation with the best accuracy at eval_params[0]

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
        if self.lr_decay not in LR_DECAY:
            raise ValueError(f"train.lr_decay must be one of {', '.join(LR_DECAY)}, got {self.lr_decay!r}")
        if self.sft_weight < 0:
            raise ValueError(f"train.sft_weight must be >= 0, got {self.sft_weight}")
        if self.sft_data not in SFT_DATA:
            raise ValueError(f"train.sft_data must be one of {', '.join(SFT_DATA)}, got {self.sft_data!r}")
        if self.eval_every < 0 or self.eval_batch_size < 1 or (self.eval_limit is not None and self.eval_limit < 1):
            raise ValueError(f"train.eval_every must be >= 0, eval_batch_size and eval_limit >= 1, got "
                             f"{self.eval_every}, {self.eval_batch_size}, {self.eval_limit}")
        if self.select_best and not self.eval_every:
            raise ValueError("train.select_best needs train.eval_every > 0 (it chooses among evaluated checkpoints)")
        if self.eval_split == "test" and self.select_best:
            raise ValueError("train.select_best on the test split would choose on test; use eval_split: validation")
        from ..samplers.registry import sampler_params

        valid = sampler_params(self.eval_sampler)
        for params in self.eval_params:
            unknown = sorted(set(params) - set(valid))
            if unknown:
                raise ValueError(f"train.eval_params: unknown parameter(s) {', '.join(unknown)} for sampler "
                                 f"{self.eval_sampler!r}; valid: {', '.join(valid)}")
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
    # Options of the task (e.g. arith's validation_fraction: 0 = the pool before validation was held out).
    task_options: dict[str, Any] = field(default_factory=dict)
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
        """Read a recipe; ``extends: other.yaml`` (relative to this file) starts from another recipe."""
        return cls.from_dict(_read_recipe(Path(path), ()))

    def override(self, section: str, **values: Any) -> DistillConfig:
        """Return a copy with ``section.key = value`` for each value that is not None."""
        sub = getattr(self, section)
        kept = {k: v for k, v in values.items() if v is not None}
        merged = build(type(sub), {**dataclasses.asdict(sub), **kept}, section + ".")
        return dataclasses.replace(self, **{section: merged}).validate()


def _read_recipe(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path.resolve() in chain:
        raise ValueError(f"{path}: extends itself through {' -> '.join(str(p) for p in chain)}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    return _merge(_read_recipe(path.parent / str(base), chain + (path.resolve(),)), data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Sections merge key by key; any other value (params dicts included) replaces the base's."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if k in SECTIONS and isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out
