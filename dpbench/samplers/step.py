"""Step strategies: one decoding step on a `Window`, chosen once per `generate` call.

A step reads the window's logits (A, W, V), decides which of its masked positions
to commit (the sampler's rule) and writes the predicted tokens into ``tokens``
(A, W) in place. It returns, per row, whether masks are left in the window.

- `TensorStep`: `StepInputs` (argmax without the mask token, float64 softmax,
  confidence, entropy: computed lazily, so a rule pays only for what it reads) and
  the sampler's ``select``. The reference, and the path on GPUs, at temperature > 0,
  with traces, and for any rule without a C twin.
- `KernelStep`: the same step as one C call on a CPU (samplers/kernel.py), for the
  built-in rules; the tensor path is what tests hold it to.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from .kernel import StepKernel, step_kernel
from .window import Policy, Window, _lazy


class StepInputs:
    """What a rule sees at one step, for the A samples still decoding.

    ``is_mask`` (A, W): the positions the rule may commit (masked positions of the
    window). Probabilities, confidence and entropy are float64 over the full softmax,
    as in the reference implementations. ``window`` (if given) says where the positions
    sit (`Window.lo`, `Window.cols`, block membership via `block_of`).
    """

    def __init__(
        self,
        logits: torch.Tensor,  # (A, W, V) window logits
        is_mask: torch.Tensor,  # (A, W)
        step: torch.Tensor | Sequence[int] | None,  # (A,) steps already taken in the current block
        mask_id: int,
        temperature: float,
        generator: torch.Generator | None,
        window: Window | None = None,
    ) -> None:
        self.logits, self.is_mask, self._step = logits, is_mask, step
        self.mask_id, self.temperature, self.generator, self.window = mask_id, temperature, generator, window

    @_lazy
    def step(self) -> torch.Tensor:
        """(A,) long: steps already taken in the current block (the loop keeps them on the host)."""
        s = self._step
        return s if isinstance(s, torch.Tensor) else torch.tensor(s, device=self.is_mask.device)

    @_lazy
    def uniform_step(self) -> int | None:
        """The step every row is at, if they share one (always at batch 1), as a host int; else None."""
        s = self._step if not isinstance(self._step, torch.Tensor) else self._step.tolist()
        return s[0] if s and s.count(s[0]) == len(s) else None

    @_lazy
    def greedy(self) -> torch.Tensor:
        """Argmax token per position; the mask token is never a candidate."""
        logits = self.logits
        if self.mask_id < logits.shape[-1]:
            logits = logits.index_fill(-1, _index(self.mask_id, logits.device), float("-inf"))
        return logits.argmax(-1)

    @_lazy
    def x0(self) -> torch.Tensor:
        """Predicted token per position: `greedy`, or at temperature > 0 Gumbel-max sampling in float64."""
        if self.temperature <= 0:
            return self.greedy
        logits = self.logits
        if self.mask_id < logits.shape[-1]:
            logits = logits.index_fill(-1, _index(self.mask_id, logits.device), float("-inf"))
        # Gumbel-max: argmax exp(l) / (-log u)^T, taken in log space.
        logits = logits.double()
        u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=self.generator)
        return (logits - self.temperature * torch.log(-torch.log(u))).argmax(-1)

    @_lazy
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1, dtype=torch.float64)

    @_lazy
    def confidence(self) -> torch.Tensor:
        return self.probs.gather(-1, self.x0[..., None]).squeeze(-1)

    @_lazy
    def entropy(self) -> torch.Tensor:
        # entr(p) = -p log p with entr(0) = 0: one fused op instead of four.
        return torch.special.entr(self.probs).sum(-1)


@lru_cache(maxsize=8)
def _index(i: int, device: torch.device) -> torch.Tensor:
    """A one-element index tensor, built once (a fresh torch.tensor per step is measurable overhead)."""
    with torch.inference_mode(False):
        return torch.tensor([i], device=device)


class TensorStep:
    """`StepInputs` + the sampler's ``select``; optionally records a `Trace`."""

    def __init__(self, sampler, mask_id: int, temperature: float, generator, trace=None) -> None:
        self.select, self.masked_only = sampler.select, sampler.selects_masked_only
        self.mask_id, self.temperature, self.generator, self.trace = mask_id, temperature, generator, trace
        # The window's mask, carried over from the last step while the window stays the same object
        # (only this step changes its tokens until the policy makes a new window).
        self.is_mask: torch.Tensor | None = None
        self.win: Window | None = None

    def __call__(self, logits: torch.Tensor, tokens: torch.Tensor, win: Window, policy: Policy) -> list[bool]:
        is_mask = self.is_mask if win is self.win else tokens == self.mask_id
        self.win = win
        limit = win.limit
        eligible = is_mask if limit is None else is_mask & limit
        s = StepInputs(logits, eligible, policy.steps(), self.mask_id, self.temperature, self.generator, win)
        commit = self.select(s)
        if not self.masked_only:
            commit = commit & eligible
        torch.where(commit, s.x0, tokens, out=tokens)
        if self.trace is not None:
            record(self.trace, win, commit, s, policy.t + 1)
        self.is_mask = is_mask = tokens == self.mask_id
        left = (is_mask if limit is None else is_mask & limit).any(1)
        if not (win.chunk or win.eos):
            return left.tolist()  # the one host sync of a step
        return _stats(win, tokens, is_mask, left)


def _stats(win: Window, tokens: torch.Tensor, is_mask: torch.Tensor, left: torch.Tensor) -> list[bool]:
    """Masks left per chunk and the first EOS position, for a window that asks for them (one sync)."""
    A, W = tokens.shape
    parts = [left[:, None].long()]
    if win.chunk:
        parts.append(is_mask.view(A, W // win.chunk, win.chunk).sum(-1))
    if win.eos:
        j = torch.arange(W, device=tokens.device)
        hit = torch.isin(tokens, torch.tensor(win.eos, device=tokens.device))
        parts.append(torch.where(hit, j, W).amin(-1, keepdim=True))
    rows = torch.cat(parts, dim=1).tolist()
    n = W // win.chunk if win.chunk else 0
    win.counts = [r[1 : 1 + n] for r in rows] if win.chunk else None
    win.first_eos = [r[-1] for r in rows] if win.eos else None
    return [bool(r[0]) for r in rows]


class KernelStep:
    """The whole step as one call of the C kernel (samplers/kernel.py)."""

    def __init__(self, kernel: StepKernel, rule, mask_id: int) -> None:
        self.kernel, self.rule, self.mask_id = kernel, rule, mask_id

    def __call__(self, logits: torch.Tensor, tokens: torch.Tensor, win: Window, policy: Policy) -> list[bool]:
        steps = policy.steps() if self.rule.k_schedule else None
        if not (win.chunk or win.eos or win.hi or win.forced_ranges):
            return self.kernel(logits, tokens, self.mask_id, self.rule, steps)
        out = self.kernel(logits, tokens, self.mask_id, self.rule, steps, hi=win.hi, forced=win.forced_ranges,
                          chunk=win.chunk, eos=win.eos)
        if not (win.chunk or win.eos):
            return out
        left, win.counts, win.first_eos = out
        return left


def step_strategy(sampler, lm, x: torch.Tensor, *, trace=None, generator=None):
    """The step of this call: the C kernel where the sampler has a kernel rule and the kernel
    applies (CPU, temperature 0, no trace, ``step_kernel`` on), else the tensor path."""
    cfg, eng = sampler.config, sampler.engine
    rule = sampler.kernel_rule() if eng.step_kernel and cfg.temperature == 0 and trace is None else None
    kernel = step_kernel() if rule is not None and StepKernel.accepts(x, sampler.window_width()) else None
    if kernel is not None:
        return KernelStep(kernel, rule, lm.mask_id)
    return TensorStep(sampler, lm.mask_id, cfg.temperature, generator, trace)


def record(tr, win: Window, commit: torch.Tensor, s: StepInputs, nfe: int) -> None:
    """Trace the positions committed this step (every active sample has now taken ``nfe`` forwards)."""
    idx, cols = win.index, win.cols

    def put(t: torch.Tensor, values: torch.Tensor | int) -> None:
        cur = t if idx is None else t[idx]
        cur = cur.scatter(1, cols, torch.where(commit, values, cur.gather(1, cols)))
        if idx is None:
            t.copy_(cur)
        else:
            t[idx] = cur

    put(tr.step, nfe)
    put(tr.confidence, s.confidence)
    put(tr.entropy, s.entropy)


def top_k_per_row(score: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Boolean mask of the k[i] highest scores of each row (k: one per row, or an int for all);
    ties go to the earlier position."""
    order = score.argsort(dim=-1, descending=True, stable=True)
    # The first k[i] places of the sorted order, scattered back to their positions.
    n = score.shape[-1]
    take = _first(n, k, score.device).expand_as(order) if isinstance(k, int) else _arange(n, score.device) < k[:, None]
    return torch.empty_like(take).scatter_(-1, order, take)


@lru_cache(maxsize=64)
def _first(n: int, k: int, device: torch.device) -> torch.Tensor:
    """(n,) bool: True at the first k places."""
    with torch.inference_mode(False):
        return torch.arange(n, device=device) < k


def best_per_row(score: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each row's single highest score (the first one on ties)."""
    return score.argmax(-1, keepdim=True) == _arange(score.shape[-1], score.device)


@lru_cache(maxsize=8)
def _arange(n: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.arange(n, device=device)
