"""Sampler registry: `get_sampler(name, **params)`, `available()`, `register_sampler`.

Built-in samplers: ``baseline`` (fixed steps), ``dparallel`` (entropy
threshold), ``confidence`` (Fast-dLLM confidence threshold), ``entropy_bound``
(EB-sampler), ``multiblock`` (d3LLM: several blocks in flight). The block samplers take
``cache=none|prefix|dual`` and ``early_stop``.
"""

from . import baseline, entropy_bound, multiblock, threshold  # noqa: F401  (registers the built-in samplers)
from .base import BlockConfig, BlockSampler, EngineConfig, SamplerOutput, StepInputs, Trace
from .registry import available, build_sampler, get_sampler, register_sampler, resolve_params, sampler_class

__all__ = [
    "BlockConfig",
    "BlockSampler",
    "EngineConfig",
    "SamplerOutput",
    "StepInputs",
    "Trace",
    "available",
    "build_sampler",
    "get_sampler",
    "register_sampler",
    "resolve_params",
    "sampler_class",
]
