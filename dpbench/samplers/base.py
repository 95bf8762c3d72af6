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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import cached_property, lru_cache
from typing import Any, ClassVar

import torch

from ..models.adapter import DiffusionLM
from ..models.kv_cache import CacheView, KVCache, lookahead_window, prefix_window

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
        step: torch.Tensor,  # (A,) steps already taken in the current block
        mask_id: int,
        temperature: float,
        generator: torch.Generator | None,
    ) -> None:
        self.logits, self.is_mask, self.step = logits, is_mask, step
        self.mask_id, self.temperature, self.generator = mask_id, temperature, generator

    @cached_property
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

    @cached_property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1, dtype=torch.float64)

    @cached_property
    def confidence(self) -> torch.Tensor:
        return self.probs.gather(-1, self.x0[..., None]).squeeze(-1)

    @cached_property
    def entropy(self) -> torch.Tensor:
        # entr(p) = -p log p with entr(0) = 0: one fused op instead of four.
        return torch.special.entr(self.probs).sum(-1)


@lru_cache(maxsize=8)
def _index(i: int, device: torch.device) -> torch.Tensor:
    """A one-element index tensor, built once (a fresh torch.tensor per step is measurable overhead)."""
    with torch.inference_mode(False):
        return torch.tensor([i], device=device)


def top_k_per_row(score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the k[i] highest scores of each row (k varies by row)."""
    order = score.argsort(dim=-1, descending=True, stable=True)
    # The first k[i] places of the sorted order, scattered back to their positions.
    take = _arange(score.shape[-1], score.device) < k[:, None]
    return torch.empty_like(take).scatter_(-1, order, take)


def best_per_row(score: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each row's single highest score (the first one on ties)."""
    return score.argmax(-1, keepdim=True) == _arange(score.shape[-1], score.device)


def lowest_per_row(score: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each row's single lowest score (the first one on ties)."""
    return score.argmin(-1, keepdim=True) == _arange(score.shape[-1], score.device)


@lru_cache(maxsize=8)
def _arange(n: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.arange(n, device=device)


class BlockSampler:
    """Base class: subclasses set ``Config`` and implement `select`."""

    Config: ClassVar[type[BlockConfig]] = BlockConfig
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.config = self.Config(**params)

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
        kv = None
        if cfg.cache != "none":
            if not lm.supports_cache:
                raise ValueError(
                    f"cache={cfg.cache!r} needs a model with KV-cache support (dpbench's native LLaDA or Dream); "
                    f"{lm.name} has none: use cache='none'"
                )
            kv, ftok = KVCache(), torch.zeros(B, dtype=torch.long, device=dev)
        x = torch.cat([input_ids, input_ids.new_full((B, G), lm.mask_id)], dim=1)
        answer = x[:, P:]  # a view: writes land in x
        attn = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attn = torch.cat([attention_mask.to(dev).long(), attention_mask.new_ones((B, G)).long().to(dev)], dim=1)

        block = torch.zeros(B, dtype=torch.long, device=dev)
        nfe = torch.zeros(B, dtype=torch.long, device=dev)
        offsets = torch.arange(L, device=dev)
        eos = torch.tensor(lm.eos_token_ids, device=dev)
        tr = _new_trace(B, G, dev) if trace else None
        # This loop is the hot path: per-sample state is kept aligned with `active` and rebuilt
        # only when a block ends, so an ordinary step indexes nothing by `active`.
        active = torch.arange(B, device=dev)
        step = torch.zeros(B, dtype=torch.long, device=dev)  # (A,) steps taken in the current block
        cols = offsets.expand(B, L)  # (A, L) answer positions of each current block
        pos = cols + P  # the same as absolute sequence positions
        pending = 0  # forwards every active sample took that are not yet added to `nfe`
        # The block all active samples are in, known on the host (None once they differ): then the
        # block is a plain slice of the logits and of the answer. Every op saved counts at batch 1.
        same: int | None = 0
        n_start = B  # samples at the first step of their block (known on the host: no sync per step)
        lookahead = cfg.dual_lookahead if cfg.cache == "dual" else None  # None: prefix cache

        while active.numel():
            full = active.numel() == B
            if kv is None:
                logits = lm.logits(x if full else x[active], None if attn is None else (attn if full else attn[active]))
                if same is not None:
                    blk_logits = logits[:, P + same * L : P + (same + 1) * L]
                else:
                    blk_logits = logits[:, P:].gather(1, cols[..., None].expand(-1, -1, logits.shape[-1]))
            else:
                blk_logits = _cached_block_logits(lm, kv, lookahead, x, attn, active, full, pos, step, n_start, ftok)
            pending += 1
            ans = answer if full else answer[active]  # a view of x, or a copy written back below
            tokens = ans.gather(1, cols) if same is None else ans[:, same * L : (same + 1) * L]
            s = StepInputs(blk_logits, tokens == lm.mask_id, step, lm.mask_id, cfg.temperature, generator)
            commit = self.select(s) & s.is_mask
            new = torch.where(commit, s.x0, tokens)
            if same is None:
                ans.scatter_(1, cols, new)
            else:
                tokens.copy_(new)  # a view of ans
            if not full:
                answer[active] = ans
            step = step + 1
            if tr is not None:
                nfe[active] += pending
                pending = 0
                _record(tr, active, cols, commit, nfe, s)

            left = (new == lm.mask_id).any(dim=1)
            n_start = 0
            if not bool(left.all()):  # some block is finished
                nfe[active] += pending
                pending = 0
                done = ~left
                ended = active[done]
                block[ended] += 1
                step[done] = 0
                if cfg.early_stop:
                    self._fill_after_eos(answer, ended, new[done, -1], block, eos, lm.eos_id, G, L)
                b = block[active]
                keep = b < cfg.num_blocks
                if not bool(keep.all()):
                    active, step, b = active[keep], step[keep], b[keep]
                cols = b[:, None] * L + offsets
                pos = cols + P
                same = int(b[0]) if b.numel() and bool((b == b[0]).all()) else None
                n_start = int((step == 0).sum())

        return SamplerOutput(
            sequences=x, nfe=nfe, prompt_length=P, forward_tokens=nfe * x.shape[1] if kv is None else ftok, trace=tr
        )

    @staticmethod
    def _fill_after_eos(answer, ended, last_tokens, block, eos, eos_id, G, L) -> None:
        """Early stop: a finished block ending in EOS means the answer is over; fill the rest."""
        stop = torch.isin(last_tokens, eos)
        if not bool(stop.any()):
            return
        idx = ended[stop]
        start = block[idx, None] * L  # first position after the finished block
        pos = torch.arange(G, device=answer.device)
        answer[idx] = torch.where(pos >= start, eos_id, answer[idx])
        block[idx] = G // L


def _cached_block_logits(lm, kv, lookahead, x, attn, active, full, pos, step, n_start, ftok) -> torch.Tensor:
    """(A, L, V) logits of each active sample's current block (absolute positions ``pos``), with a KV cache.

    Samples at a block's first step get a full forward that (re)fills their cache
    rows; the others a windowed forward against it (``lookahead``: None = prefix
    cache, else dual with that many fresh positions after the block). ``ftok``
    counts query positions. ``n_start`` of the samples are at step 0 of their block.
    """
    A, N = active.numel(), x.shape[1]
    starting = step == 0 if 0 < n_start < A else None  # only a mixed step needs the per-row choice
    out = None
    for first in (True, False):
        n = n_start if first else A - n_start
        if n == 0:
            continue
        sel = None if n == A else (starting if first else ~starting)
        whole = n == A and full  # every row of the batch, in order: index nothing
        rows = active if n == A else active[sel]
        xs = x if whole else x[rows]
        am = None if attn is None else (attn if whole else attn[rows])
        p = pos if n == A else pos[sel]
        if first:
            logits = lm.logits(xs, am, cache=CacheView(kv, None if whole else rows))
            blk = logits.gather(1, p[..., None].expand(-1, -1, logits.shape[-1]))
            _count(ftok, rows, whole, N)
        elif lookahead == 0:
            blk = lm.logits_window(xs, am, p, None, cache=kv, rows=None if whole else rows)
            _count(ftok, rows, whole, p.shape[1] + lm.shift_logits)
        else:
            if lookahead is None:
                index, fresh = prefix_window(p[:, 0], N)
            else:
                index, fresh = lookahead_window(p[:, 0], p.shape[1] + lookahead, N)
            logits = lm.logits_window(xs, am, index, fresh, cache=kv, rows=None if whole else rows)
            blk = logits.gather(1, (p - index[:, :1])[..., None].expand(-1, -1, logits.shape[-1]))
            _count(ftok, rows, whole, index.shape[1] + lm.shift_logits)
        if n == A:
            return blk
        if out is None:
            out = blk.new_empty((A,) + blk.shape[1:])
        out[sel] = blk
    return out


def _count(ftok: torch.Tensor, rows: torch.Tensor, whole: bool, n: int) -> None:
    """Add ``n`` query positions to the forward-token count of ``rows`` (all of them: one in-place add)."""
    if whole:
        ftok += n
    else:
        ftok[rows] += n


def _new_trace(B: int, G: int, dev) -> Trace:
    nan = torch.full((B, G), float("nan"), dtype=torch.float64, device=dev)
    return Trace(step=torch.zeros((B, G), dtype=torch.long, device=dev), confidence=nan, entropy=nan.clone())


def _record(tr: Trace, active, cols, commit, nfe, s: StepInputs) -> None:
    def put(t: torch.Tensor, values: torch.Tensor) -> None:
        t[active] = t[active].scatter(1, cols, torch.where(commit, values, t[active].gather(1, cols)))

    put(tr.step, nfe[active, None].expand_as(cols))
    put(tr.confidence, s.confidence)
    put(tr.entropy, s.entropy)
