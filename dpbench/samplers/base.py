"""The semi-autoregressive block loop shared by every sampler.

The answer (``gen_length`` tokens) is split into blocks decoded left to right.
At each step one forward pass gives logits for the whole sequence; the sampler
looks only at the current block of each sample and decides which masked
positions to commit (`BlockSampler.select`). Positions after the current block
stay masked. A block ends when it has no masks left.

Batching: every sample advances through its own blocks. Samples that are done
leave the batch, so they stop costing forwards and their NFE stops counting.
At temperature 0 each sample gets exactly the tokens and NFE it gets alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any, ClassVar

import torch

from ..models.adapter import DiffusionLM


@dataclass
class BlockConfig:
    """Parameters every block sampler takes."""

    gen_length: int = 256
    block_length: int = 32
    temperature: float = 0.0
    early_stop: bool = False

    def __post_init__(self) -> None:
        if self.gen_length < 1:
            raise ValueError(f"gen_length must be >= 1, got {self.gen_length}")
        if self.block_length < 1 or self.gen_length % self.block_length:
            raise ValueError(
                f"block_length must be >= 1 and divide gen_length ({self.gen_length}), got {self.block_length}"
            )
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")

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
    forward_tokens: torch.Tensor  # (B,): token positions run through the model, summed over forwards
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
            logits = logits.index_fill(-1, torch.tensor([self.mask_id], device=logits.device), float("-inf"))
        if self.temperature > 0:
            # Gumbel-max in float64: argmax exp(l) / (-log u)^T, taken in log space.
            logits = logits.double()
            u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=self.generator)
            logits = logits - self.temperature * torch.log(-torch.log(u))
        return logits.argmax(-1)

    @cached_property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits.double(), dim=-1)

    @cached_property
    def confidence(self) -> torch.Tensor:
        return self.probs.gather(-1, self.x0[..., None]).squeeze(-1)

    @cached_property
    def entropy(self) -> torch.Tensor:
        p = self.probs
        return -(p * torch.log(p + 1e-12)).sum(-1)


def top_k_per_row(score: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the k[i] highest scores of each row (k varies by row)."""
    order = score.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(score.shape[-1], device=score.device).expand_as(order))
    return ranks < k[:, None]


def best_per_row(score: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each row's single highest score."""
    return torch.zeros_like(score, dtype=torch.bool).scatter_(-1, score.argmax(-1, keepdim=True), True)


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
        x = torch.cat([input_ids, input_ids.new_full((B, G), lm.mask_id)], dim=1)
        answer = x[:, P:]  # a view: writes land in x
        attn = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attn = torch.cat([attention_mask.to(dev).long(), attention_mask.new_ones((B, G)).long().to(dev)], dim=1)

        block = torch.zeros(B, dtype=torch.long, device=dev)
        step = torch.zeros(B, dtype=torch.long, device=dev)
        nfe = torch.zeros(B, dtype=torch.long, device=dev)
        offsets = torch.arange(L, device=dev)
        eos = torch.tensor(lm.eos_token_ids, device=dev)
        tr = _new_trace(B, G, dev) if trace else None
        active = torch.arange(B, device=dev)

        while active.numel():
            full = active.numel() == B
            logits = lm.logits(x if full else x[active], None if attn is None else (attn if full else attn[active]))
            nfe[active] += 1
            cols = block[active, None] * L + offsets  # (A, L) answer positions of each current block
            blk_logits = logits[:, P:].gather(1, cols[..., None].expand(-1, -1, logits.shape[-1]))
            tokens = answer[active].gather(1, cols)
            s = StepInputs(blk_logits, tokens == lm.mask_id, step[active], lm.mask_id, cfg.temperature, generator)
            commit = self.select(s) & s.is_mask
            new = torch.where(commit, s.x0, tokens)
            answer[active] = answer[active].scatter(1, cols, new)
            if tr is not None:
                _record(tr, active, cols, commit, nfe, s)
            step[active] += 1

            done_block = ~(new == lm.mask_id).any(dim=1)
            if bool(done_block.any()):
                ended = active[done_block]
                block[ended] += 1
                step[ended] = 0
                if cfg.early_stop:
                    self._fill_after_eos(answer, ended, new[done_block, -1], block, eos, lm.eos_id, G, L)
                active = active[block[active] < cfg.num_blocks]

        return SamplerOutput(
            sequences=x, nfe=nfe, prompt_length=P, forward_tokens=nfe * x.shape[1], trace=tr
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


def _new_trace(B: int, G: int, dev) -> Trace:
    nan = torch.full((B, G), float("nan"), dtype=torch.float64, device=dev)
    return Trace(step=torch.zeros((B, G), dtype=torch.long, device=dev), confidence=nan, entropy=nan.clone())


def _record(tr: Trace, active, cols, commit, nfe, s: StepInputs) -> None:
    def put(t: torch.Tensor, values: torch.Tensor) -> None:
        t[active] = t[active].scatter(1, cols, torch.where(commit, values, t[active].gather(1, cols)))

    put(tr.step, nfe[active, None].expand_as(cols))
    put(tr.confidence, s.confidence)
    put(tr.entropy, s.entropy)
