"""`entropy_bound`: the EB-sampler (Ben-Hamu et al., 2025, arXiv 2505.24857).

At each step the masked positions of the current block are sorted by the
entropy of their predictive distribution, lowest first, and the longest prefix
``H_1 <= ... <= H_k`` with

    (H_1 + ... + H_k) - max(H_1, ..., H_k)  <=  gamma

is committed. The left side bounds the mutual information among the committed
tokens, so tokens the model is jointly sure about go together; gamma = 0 commits
one token per step, a large gamma the whole block. The first token always
passes (its left side is 0), so every step makes progress.

This is the selection rule of diffusers' `EntropyBoundScheduler` (checked by
tests/test_entropy_bound.py). Differences, all outside the rule itself: that
scheduler serves a uniform-noise model, so it ranks every position of the block
(here: masked positions only), draws candidates by sampling at a temperature
annealed from ``t_max`` to ``t_min`` and measures entropy on those scaled logits
in float32 (here: greedy at temperature 0, entropy of the unscaled softmax in
float64 as dParallel's sampler uses, temperature only adds Gumbel noise to the
token choice), and its sort is not stable (here ties keep block order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BlockConfig, BlockSampler, StepInputs
from .kernel import KernelRule
from .registry import register_sampler


@dataclass
class EntropyBoundConfig(BlockConfig):
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gamma >= 0:
            raise ValueError(f"gamma (an entropy bound, in nats) must be >= 0, got {self.gamma}")


@register_sampler("entropy_bound", aliases=("eb", "eb-sampler", "eb_sampler", "entropy-bound"))
class EntropyBoundSampler(BlockSampler):
    """EB-sampler: commit the lowest-entropy masked tokens while sum(H) - max(H) <= gamma."""

    Config = EntropyBoundConfig
    # Committed positions get entropy inf: sorted after every masked one, where the running sum is
    # inf and inf - inf = nan fails the bound. (A nan entropy fails it too.)
    selects_masked_only = True

    def select(self, s: StepInputs) -> torch.Tensor:
        h = torch.where(s.is_mask, s.entropy, float("inf"))
        h_sorted, order = h.sort(dim=-1, stable=True)
        # In ascending order the running max is the current entry. The first entry (a masked one: every
        # active row has one) always passes, 0 <= gamma, so every step makes progress.
        ok = h_sorted.cumsum(-1) - h_sorted <= self.config.gamma
        return torch.empty_like(ok).scatter_(-1, order, ok)  # order is a permutation: every place is written

    def kernel_rule(self) -> KernelRule:
        return KernelRule("entropy_bound", self.config.gamma)
