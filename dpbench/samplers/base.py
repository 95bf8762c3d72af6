"""The decoding loop every sampler shares, and the configuration it reads.

A sampler is a *rule* (`BlockSampler.select`: which of the positions it may commit
now to commit, from per-position probabilities and entropies) plus a *window
policy* (`BlockSampler.window_policy`: which positions those are; by default LLaDA's
semi-autoregressive current block, `window.SingleBlock`). The loop in `generate`
owns the forward passes and the bookkeeping; how a forward runs (plain, CUDA graph,
KV-cached: `forward.py`) and how a step is computed (tensor ops or one C call:
`step.py`) are chosen once per call. docs/samplers.md shows how to write a decoder.

Batching: every sample advances through its own windows. Samples that are done
leave the batch, so they stop costing forwards and their NFE stops counting. At
temperature 0 each sample gets exactly the tokens and NFE it gets alone.

Configuration: algorithm parameters (``Config``: lengths, temperature, early stop,
a rule's threshold) are kept apart from engine settings (``Engine``: cache mode,
CUDA graph, C step kernel), which change how fast a decode runs, not what it means
(the cache modes are approximations: docs/speed.md). Both are validated dataclasses;
`get_sampler` takes their fields as one flat set of keywords, and ``params()``
returns them flat for run manifests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch

from ..models.adapter import DiffusionLM
from .forward import forward_strategy
from .kernel import KernelRule
from .step import StepInputs, best_per_row, step_strategy, top_k_per_row
from .window import Policy, SingleBlock

CACHE_MODES = ("none", "prefix", "dual")


@dataclass
class BlockConfig:
    """Algorithm parameters every block sampler takes."""

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
class EngineConfig:
    """How the loop runs: same decoding semantics, different speed (the caches approximate)."""

    cache: str = "none"
    # With cache="dual": also run this many positions after the block as fresh queries, so the
    # keys the model reads right after the block are not stale (0 = Fast-dLLM's dual cache).
    dual_lookahead: int = 0
    # Replay the forward from a recorded CUDA graph (cache="none", CUDA, unpadded batches with every
    # sample still decoding; models/cuda_graph.py gives the measured gain and where it comes from).
    cuda_graph: bool = False
    # Run a built-in sampler's step as one C call where it applies (CPU, temperature 0, no trace;
    # samplers/kernel.py): the same tokens, less time outside the model at batch 1.
    step_kernel: bool = True

    def __post_init__(self) -> None:
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if self.dual_lookahead < 0:
            raise ValueError(f"dual_lookahead must be >= 0, got {self.dual_lookahead}")
        if self.dual_lookahead and self.cache != "dual":
            raise ValueError(f"dual_lookahead applies only with cache='dual', got cache={self.cache!r}")
        if self.cuda_graph and self.cache != "none":
            raise ValueError(f"cuda_graph applies only with cache='none' (its forwards have fixed shapes), got cache={self.cache!r}")


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


class BlockSampler:
    """Base class: subclasses set ``Config`` and implement `select` (and may set ``Engine`` and
    override `window_policy`)."""

    Config: ClassVar[type[BlockConfig]] = BlockConfig
    Engine: ClassVar[type[EngineConfig]] = EngineConfig
    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    # True if `select` by construction never picks a position outside ``s.is_mask``, so the loop
    # need not intersect its choice with it (one op a step; tested for each sampler that sets it).
    selects_masked_only: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        engine = {f.name for f in fields(self.Engine)}
        self.engine = self.Engine(**{k: v for k, v in params.items() if k in engine})
        self.config = self.Config(**{k: v for k, v in params.items() if k not in engine})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "select" in cls.__dict__ and "kernel_rule" not in cls.__dict__:
            cls.kernel_rule = BlockSampler.kernel_rule  # a new select: an inherited rule no longer describes it

    def params(self) -> dict[str, Any]:
        return {**asdict(self.config), **asdict(self.engine)}

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in (*fields(cls.Config), *fields(cls.Engine))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def select(self, s: StepInputs) -> torch.Tensor:
        """(A, W) bool: which of the positions in ``s.is_mask`` to commit now."""
        raise NotImplementedError

    def kernel_rule(self) -> KernelRule | None:
        """The rule of the CPU step kernel that does what `select` does at temperature 0, if any
        (samplers/kernel.py); None: always the tensor path. A subclass that overrides `select`
        gets None unless it also says which rule it follows."""
        return None

    def window_width(self) -> int:
        """The widest window the policy hands a step (the C kernel holds a limited width)."""
        return self.config.block_length

    def window_policy(self, B: int, P: int, lm: DiffusionLM) -> Policy:
        """Which positions each of B samples (prompts of P positions) may commit at each step:
        LLaDA's current block."""
        cfg = self.config
        return SingleBlock(B, P, cfg.gen_length, cfg.block_length, lm.device, early_stop=cfg.early_stop,
                           eos_ids=lm.eos_token_ids, eos_fill=lm.eos_id)

    def forward_strategy(self, lm: DiffusionLM, attn: torch.Tensor | None, B: int):
        """How this call's forwards run (forward.py), from the engine settings."""
        return forward_strategy(lm, attn, self.engine)

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
        """Decode ``gen_length`` answer tokens after left-padded ``input_ids`` (B, P).

        1. Lay out each sequence: its prompt, then ``gen_length`` mask tokens (`_layout`).
        2. Choose, once: the window policy, the forward strategy, the step strategy.
        3. While a sample is decoding: one forward gives the logits of the policy's window
           (on what the policy says the model sees); the step commits into the window's
           tokens; they are written back; the policy records progress, ends blocks, lets
           finished samples leave and prepares the next window.
        """
        x, attn, P = self._layout(lm, input_ids, attention_mask)
        tr = new_trace(x.shape[0], self.config.gen_length, x.device) if trace else None
        policy = self.window_policy(x.shape[0], P, lm)
        forward = self.forward_strategy(lm, attn, x.shape[0])
        step = step_strategy(self, lm, x, trace=tr, generator=generator)
        name = self.name or type(self).__name__
        while policy.active:
            win = policy.window
            logits = forward(policy.model_input(x), win, policy)
            tokens = win.tokens(x)
            left = step(logits, tokens, win, policy)
            win.put(x, tokens)
            policy.advance(left, tokens, x, name)
        ftok = [n * x.shape[1] for n in policy.nfe] if self.engine.cache == "none" else policy.ftok
        return SamplerOutput(sequences=x, nfe=torch.tensor(policy.nfe, device=x.device), prompt_length=P,
                             forward_tokens=torch.tensor(ftok, device=x.device), trace=tr)

    def _layout(self, lm: DiffusionLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """Validated inputs -> (sequences (B, P + G): prompt then masks, attention mask or None, P)."""
        dev = lm.device
        input_ids = input_ids.to(dev)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, prompt_length), got shape {tuple(input_ids.shape)}")
        if self.engine.cache != "none" and not lm.supports_cache:
            raise ValueError(
                f"cache={self.engine.cache!r} needs a model with KV-cache support (dpbench's native LLaDA or Dream); "
                f"{lm.name} has none: use cache='none'"
            )
        B, P = input_ids.shape
        G = self.config.gen_length
        lm.check_length(P, G)  # the longest prompt of a left-padded batch has P real tokens
        x = torch.cat([input_ids, input_ids.new_full((B, G), lm.mask_id)], dim=1)
        attn = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attn = torch.cat([attention_mask.to(dev).long(), attention_mask.new_ones((B, G)).long().to(dev)], dim=1)
        return x, attn, P


def new_trace(B: int, G: int, dev) -> Trace:
    nan = torch.full((B, G), float("nan"), dtype=torch.float64, device=dev)
    return Trace(step=torch.zeros((B, G), dtype=torch.long, device=dev), confidence=nan, entropy=nan.clone())


__all__ = [
    "BlockConfig", "BlockSampler", "EngineConfig", "SamplerOutput", "StepInputs", "Trace", "best_per_row", "top_k_per_row",
]
