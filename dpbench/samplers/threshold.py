"""Threshold samplers: commit every masked token of the block that is certain enough.

`dparallel` measures certainty by the entropy of the full softmax (commit if
entropy <= threshold), `confidence` (Fast-dLLM) by the probability of the
predicted token (commit if prob >= threshold). Both always commit the single
most certain masked token, so every step makes progress.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BlockConfig, BlockSampler, StepInputs
from .kernel import KernelRule
from .registry import register_sampler


@dataclass
class EntropyThresholdConfig(BlockConfig):
    threshold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.threshold < float("inf"):
            raise ValueError(f"threshold (an entropy, in nats) must be >= 0 and finite, got {self.threshold}")


@dataclass
class ConfidenceThresholdConfig(BlockConfig):
    threshold: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold (a probability) must be in [0, 1], got {self.threshold}")


@register_sampler("dparallel", aliases=("entropy", "entropy_threshold"))
class DParallelSampler(BlockSampler):
    """dParallel: commit masked tokens whose entropy is <= threshold (at least the lowest one)."""

    Config = EntropyThresholdConfig
    selects_masked_only = True  # committed positions get entropy inf: never <= threshold, never the lowest

    def select(self, s: StepInputs) -> torch.Tensor:
        h = torch.where(s.is_mask, s.entropy, float("inf"))
        return (h <= self.config.threshold).scatter_(-1, h.argmin(-1, keepdim=True), True)

    def kernel_rule(self) -> KernelRule:
        return KernelRule("entropy_threshold", self.config.threshold)


@register_sampler("confidence", aliases=("fast-dllm", "fast_dllm", "conf"))
class ConfidenceSampler(BlockSampler):
    """Fast-dLLM: commit masked tokens whose confidence is >= threshold (at least the top one)."""

    Config = ConfidenceThresholdConfig
    selects_masked_only = True  # committed positions get confidence -inf

    def select(self, s: StepInputs) -> torch.Tensor:
        c = torch.where(s.is_mask, s.confidence, float("-inf"))
        return (c >= self.config.threshold).scatter_(-1, c.argmax(-1, keepdim=True), True)

    def kernel_rule(self) -> KernelRule:
        return KernelRule("confidence_threshold", self.config.threshold)
