"""The semi-autoregressive block loop shared by every sampler.

The answer (``gen_length`` tokens) is split into blocks decoded left to right.
At each step one forward pass gives logits for the whole sequence; the sampler
looks only at the current block of each sample and decides which masked
positions to commit (`BlockSampler.select`). Positions after the current block
stay masked. A block ends when it has no masks left.

Batching: every sample advances through its own blocks. Samples that are done
leave the batch, so they stop costing forwards and their NFE stops counting.
At temperature 0 each sample gets exactly the tokens and NFE it gets alone.

KV cache (``cache=prefix|dual``, native models only; see models/kv_cache.py):
the first forward of each block is a full forward that stores keys/values;
the block's later forwards run only a query window against them (prefix: the
block and everything after it; dual: the block). Samples at the start of a
block and samples inside one take separate forwards in the same step, so each
still costs one NFE and gets what it would get alone.

Cost of the loop itself: at batch 1 on a CPU each small tensor op costs 10-40 us
once a forward has flushed the caches, so a step runs a dozen ops and keeps the
per-sample counters on the host (`rows.Rows`); on a CPU the built-in samplers run
the whole step as one C call instead (`kernel.py`, same tokens). docs/speed.md
has the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any, ClassVar

import torch

from ..models.adapter import DiffusionLM
from .kernel import KernelRule, StepKernel, step_kernel
from .rows import CachedForward, Rows, take_rows

CACHE_MODES = ("none", "prefix", "dual")


@dataclass
class BlockConfig:
    """Parameters every block sampler takes."""

    gen_length: int = 256
    block_length: int = 32
    temperature: float = 0.0
    early_stop: bool = False
    cache: str = "none"
    # With cache="dual": also run this many positions after the block as fresh queries, so the
    # keys the model reads right after the block are not stale (0 = Fast-dLLM's dual cache).
    dual_lookahead: int = 0
    # Replay the forward from a recorded CUDA graph (cache="none", CUDA, unpadded batches with every
    # sample still decoding; see models/cuda_graph.py): 1.5-2.6x faster batch-1 decoding on an H200.
    cuda_graph: bool = False
    # Run a built-in sampler's step as one C call where it applies (CPU, temperature 0, no trace;
    # samplers/kernel.py): the same tokens, a fraction of the time outside the model at batch 1.
    step_kernel: bool = True

    def __post_init__(self) -> None:
        if self.gen_length < 1:
            raise ValueError(f"gen_length must be >= 1, got {self.gen_length}")
        if self.block_length < 1 or self.gen_length % self.block_length:
            raise ValueError(
                f"block_length must be >= 1 and divide gen_length ({self.gen_length}), got {self.block_length}"
            )
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if self.dual_lookahead < 0:
            raise ValueError(f"dual_lookahead must be >= 0, got {self.dual_lookahead}")
        if self.dual_lookahead and self.cache != "dual":
            raise ValueError(f"dual_lookahead applies only with cache='dual', got cache={self.cache!r}")
        if self.cuda_graph and self.cache != "none":
            raise ValueError(f"cuda_graph applies only with cache='none' (its forwards have fixed shapes), got cache={self.cache!r}")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length


@dataclass
class Trace:
    """Per answer position: when it was committed and how certain the model was then.

    ``step`` is the 1-based forward pass (of that sample) that committed the
    position, 0 if it was never committed by a forward (early-stop EOS fill).
    """

    step: torch.Tensor  # (B, G) long
    confidence: torch.Tensor  # (B, G) float64, prob of the committed token
    entropy: torch.Tensor  # (B, G) float64, entropy of the full softmax


@dataclass
class SamplerOutput:
    sequences: torch.Tensor  # (B, P+G): prompt then answer
    nfe: torch.Tensor  # (B,): forward passes each sample needed
    prompt_length: int
    forward_tokens: torch.Tensor  # (B,): query positions run through the model, summed over forwards
    trace: Trace | None = None

    @property
    def answers(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]


class _lazy:
    """`functools.cached_property` without its per-instance lock (taken on every first access
    before Python 3.12; a few microseconds per step that the sampler loop can do without)."""

    def __init__(self, fn) -> None:
        self.fn, self.__doc__ = fn, fn.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)  # later reads find it in the instance dict
        return value


class StepInputs:
    """What a sampler sees at one step, for the A samples still decoding.

    Quantities are computed lazily so a sampler pays only for what it reads.
    Probabilities, confidence and entropy are float64 over the full softmax,
    as in the reference implementations.
    """

    def __init__(
        self,
        logits: torch.Tensor,  # (A, L, V) current-block logits
        is_mask: torch.Tensor,  # (A, L)
        step: torch.Tensor | Sequence[int],  # (A,) steps already taken in the current block
        mask_id: int,
        temperature: float,
        generator: torch.Generator | None,
    ) -> None:
        self.logits, self.is_mask, self._step = logits, is_mask, step
        self.mask_id, self.temperature, self.generator = mask_id, temperature, generator

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
    def x0(self) -> torch.Tensor:
        """Predicted token per position; the mask token is never a candidate."""
        logits = self.logits
        if self.mask_id < logits.shape[-1]:
            logits = logits.index_fill(-1, _index(self.mask_id, logits.device), float("-inf"))
        if self.temperature > 0:
            # Gumbel-max in float64: argmax exp(l) / (-log u)^T, taken in log space.
            logits = logits.double()
            u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=self.generator)
            logits = logits - self.temperature * torch.log(-torch.log(u))
        return logits.argmax(-1)

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


class BlockSampler:
    """Base class: subclasses set ``Config`` and implement `select`."""

    Config: ClassVar[type[BlockConfig]] = BlockConfig
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    # True if `select` by construction never picks a committed (unmasked) position, so the loop
    # need not intersect its choice with the mask (one op a step; tested for each sampler that sets it).
    selects_masked_only: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.config = self.Config(**params)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "select" in cls.__dict__ and "kernel_rule" not in cls.__dict__:
            cls.kernel_rule = BlockSampler.kernel_rule  # a new select: an inherited rule no longer describes it

    def params(self) -> dict[str, Any]:
        return asdict(self.config)

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls.Config)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def select(self, s: StepInputs) -> torch.Tensor:
        """(A, L) bool: which masked positions of the current block to commit now."""
        raise NotImplementedError

    def kernel_rule(self) -> KernelRule | None:
        """The rule of the CPU step kernel that does what `select` does at temperature 0, if any
        (samplers/kernel.py); None: always the tensor path. A subclass that overrides `select`
        gets None unless it also says which rule it follows."""
        return None

    @torch.inference_mode()
    def generate(
        self,
        lm: DiffusionLM,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        trace: bool = False,
        generator: torch.Generator | None = None,
    ) -> SamplerOutput:
        """Decode ``gen_length`` answer tokens after left-padded ``input_ids`` (B, P)."""
        cfg = self.config
        dev = lm.device
        input_ids = input_ids.to(dev)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, prompt_length), got shape {tuple(input_ids.shape)}")
        B, P = input_ids.shape
        G, L = cfg.gen_length, cfg.block_length
        if cfg.cache != "none" and not lm.supports_cache:
            raise ValueError(
                f"cache={cfg.cache!r} needs a model with KV-cache support (dpbench's native LLaDA or Dream); "
                f"{lm.name} has none: use cache='none'"
            )
        x = torch.cat([input_ids, input_ids.new_full((B, G), lm.mask_id)], dim=1)
        answer = x[:, P:]  # a view: writes land in x
        attn = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attn = torch.cat([attention_mask.to(dev).long(), attention_mask.new_ones((B, G)).long().to(dev)], dim=1)
        rows = Rows(B, P, L, cfg.num_blocks, dev)
        graphed = cfg.cuda_graph and attn is None  # a padded batch runs eagerly (see models/cuda_graph.py)
        cached = None if cfg.cache == "none" else CachedForward(lm, x, attn, cfg.cache, cfg.dual_lookahead)
        tr = _new_trace(B, G, dev) if trace else None
        eos = set(lm.eos_token_ids)
        is_mask = None  # (A, L) masks of the current blocks, carried over from the last step while no block ends
        # The CPU step kernel does a built-in rule's whole step in one call (samplers/kernel.py).
        rule = self.kernel_rule() if cfg.step_kernel and cfg.temperature == 0 and tr is None else None
        kernel = step_kernel() if rule is not None and StepKernel.accepts(x, L) else None

        while rows.active:
            sub = rows.index  # None: every sample, in order (then nothing is indexed)
            if graphed and sub is None:  # one recorded graph for every block: the head on the whole answer
                blk_logits = rows.block_of(lm.logits_graphed(x, positions=(P, P + G)), 0)
            elif cached is None:
                xs, am = take_rows(x, attn, sub)
                logits = lm.logits(xs, am, positions=rows.span)  # the output head on the blocks only
                blk_logits = rows.block_of(logits, P - rows.span[0])
            else:
                blk_logits = cached.block_logits(rows)
            ans = answer if sub is None else answer[sub]  # a view of x, or a copy written back below
            tokens = rows.answer_block(ans) if sub is None else rows.block_of(ans, 0)
            # Commit in place into tokens: a view of ans when the rows share a block, else a gathered copy.
            if kernel is not None:
                left = kernel(blk_logits, tokens, lm.mask_id, rule, rows.steps() if rule.k_schedule else None)
                is_mask = None
            else:
                if is_mask is None:
                    is_mask = tokens == lm.mask_id
                s = StepInputs(blk_logits, is_mask, rows.steps(), lm.mask_id, cfg.temperature, generator)
                commit = self.select(s)
                if not self.selects_masked_only:
                    commit = commit & is_mask
                torch.where(commit, s.x0, tokens, out=tokens)
                if tr is not None:
                    _record(tr, rows, commit, s, rows.t + 1)
                is_mask = tokens == lm.mask_id
                left = is_mask.any(1).tolist()  # the one host sync of a step
            if rows.same is None:  # rows in different blocks: write the gathered copy back
                ans.scatter_(1, rows.cols, tokens)
            if sub is not None:
                answer[sub] = ans
            rows.t += 1
            if rows.t >= rows.deadline:
                rows.check_progress(left, self.name or type(self).__name__)
            if all(left):
                continue
            ended = rows.end_blocks(left)
            if cfg.early_stop:
                # A finished block ending in EOS means the answer is over: fill the rest, stop decoding it.
                last = tokens[:, -1].tolist()
                for k, i in ended:
                    if last[k] in eos:
                        answer[i, rows.block[i] * L :] = lm.eos_id
                        rows.block[i] = cfg.num_blocks
            rows.regroup()
            is_mask = None

        ftok = [n * x.shape[1] for n in rows.nfe] if cached is None else rows.ftok
        return SamplerOutput(
            sequences=x, nfe=torch.tensor(rows.nfe, device=dev), prompt_length=P,
            forward_tokens=torch.tensor(ftok, device=dev), trace=tr,
        )


def _new_trace(B: int, G: int, dev) -> Trace:
    nan = torch.full((B, G), float("nan"), dtype=torch.float64, device=dev)
    return Trace(step=torch.zeros((B, G), dtype=torch.long, device=dev), confidence=nan, entropy=nan.clone())


def _record(tr: Trace, rows: Rows, commit: torch.Tensor, s: StepInputs, nfe: int) -> None:
    """Trace the positions committed this step (every active sample has now taken ``nfe`` forwards)."""
    idx, cols = rows.index, rows.cols

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
