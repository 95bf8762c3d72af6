"""`baseline`: LLaDA's fixed-step sampler with low-confidence (or random) remasking.

Each block gets ``steps / num_blocks`` steps. At step s of a block, k tokens are
committed, where the block's masked count m is spread as evenly as possible:
k = m // steps_per_block, plus one for the first m % steps_per_block steps.
The paper's "few-step" row is this sampler with fewer steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BlockConfig, BlockSampler, StepInputs, top_k_per_row
from .kernel import KernelRule
from .registry import register_sampler

REMASKING = ("low_confidence", "random")


@dataclass
class BaselineConfig(BlockConfig):
    steps: int = 256
    remasking: str = "low_confidence"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.steps % self.num_blocks:
            raise ValueError(
                f"steps must be a positive multiple of the block count "
                f"({self.gen_length}/{self.block_length} = {self.num_blocks}), got {self.steps}"
            )
        if self.steps > self.gen_length:
            raise ValueError(f"steps must be <= gen_length ({self.gen_length}): a step commits at least one token, got {self.steps}")
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking must be one of {', '.join(REMASKING)}, got {self.remasking!r}")

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def k_at(self, step: int) -> int:
        """Tokens committed at step ``step`` (0-based) of a block: its m masks spread evenly."""
        m, spb = self.block_length, self.steps_per_block
        return m // spb + int(step < m % spb)


@register_sampler("baseline", aliases=("llada", "fixed", "few-step", "few_step"))
class BaselineSampler(BlockSampler):
    """Fixed steps per block; commit the k most confident (or k random) masked tokens."""

    Config = BaselineConfig
    selects_masked_only = True

    def select(self, s: StepInputs) -> torch.Tensor:
        cfg: BaselineConfig = self.config
        spb = cfg.steps_per_block
        # Every block starts fully masked, so m is the block length.
        m = cfg.block_length
        step = s.uniform_step  # a host int when all rows are at the same step: no tensor ops for k
        k = cfg.k_at(step) if step is not None else m // spb + (s.step < m % spb).long()
        if cfg.remasking == "low_confidence":
            score = s.confidence
        else:
            score = torch.rand(s.is_mask.shape, dtype=torch.float64, device=s.is_mask.device, generator=s.generator)
        # k never exceeds the masks left (the schedule commits exactly m over the block), so this
        # picks masked positions only.
        return top_k_per_row(torch.where(s.is_mask, score, float("-inf")), k)

    def kernel_rule(self) -> KernelRule | None:
        if self.config.remasking != "low_confidence":
            return None  # random remasking draws from the torch generator: the tensor path
        cfg: BaselineConfig = self.config
        return KernelRule("top_k_confidence", k_schedule=tuple(cfg.k_at(t) for t in range(cfg.steps_per_block)))
