"""`PretrainConfig`: the settings of `dpbench pretrain`, from defaults, a YAML recipe and flags.

Recipes live in configs/pretrain/ (``tiny-arith-gpu.yaml`` is the shipped teacher's,
``tiny-arith-cpu.yaml`` the one sized for 2 CPU cores). Keys are checked strictly
(`dpbench.distill.schema`): an unknown key or an ill-typed value is a ValueError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..distill.schema import build

# Keys that may change between a run and its resume: they do not change what is trained.
RESUMABLE_CHANGES = frozenset({"eval_limit", "eval_samplers", "eval_every", "eval_every_limit", "eval_batch_size",
                               "eval_split", "eval_every_split", "save_every", "keep_checkpoints", "threads", "device"})


@dataclass
class PretrainConfig:
    task: str = "arith"
    # Task options (e.g. arith's validation_fraction); {}: the task's own definition.
    task_options: dict[str, Any] = field(default_factory=dict)
    # Defaults are the shipped tiny-arith teacher's recipe (configs/pretrain/tiny-arith-gpu.yaml:
    # 1.7 min on one H200, hours on a CPU; configs/pretrain/tiny-arith-cpu.yaml fits 2 CPU cores).
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
    eval_limit: int = 500  # documents of eval_split scored at the end (0: skip)
    eval_split: str = "test"
    eval_samplers: tuple[str, ...] = ("baseline",)  # each scored at the end with the task's params
    eval_every: int = 0  # also score eval_every_limit docs of eval_every_split every N steps (0: never)
    eval_every_limit: int = 100
    eval_every_split: str = "validation"  # choices during training never look at test
    eval_batch_size: int = 100
    save_every: int = 0  # write a resumable checkpoint every N steps (0: only the final model)
    keep_checkpoints: int = 2
    threads: int | None = None  # torch CPU threads (None: torch's default)
    device: str = "cpu"

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "d_model", "n_layers", "n_heads", "mlp_hidden_size", "eval_batch_size",
                    "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("warmup_steps", "eval_limit", "eval_every", "eval_every_limit", "save_every"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model / n_heads must be an even integer (RoPE), got {self.d_model} / {self.n_heads}")
        if not 0.0 < self.eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.gen_length is not None and self.gen_length < 1:
            raise ValueError(f"gen_length must be >= 1 or null, got {self.gen_length}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        self.eval_samplers = tuple(self.eval_samplers)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PretrainConfig:
        return build(cls, data or {})

    @classmethod
    def from_yaml(cls, path: str | Path) -> PretrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        return cls.from_dict(data)

    def override(self, **values: Any) -> PretrainConfig:
        """A copy with every value that is not None set (command-line flags over a recipe file)."""
        return build(type(self), {**asdict(self), **{k: v for k, v in values.items() if v is not None}})

    def training_keys(self) -> dict[str, Any]:
        """The settings that decide the trained weights (a resume must not change them)."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_CHANGES}


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(PretrainConfig)]
