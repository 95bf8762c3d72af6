"""lm-eval generation kwargs -> dpbench sampler parameters (see `dpbench.lmeval.model` for the rules)."""

from __future__ import annotations

import math
from typing import Any

GEN_KWARGS = ("until", "max_gen_toks", "temperature", "do_sample")


def sampler_overrides(gen_kwargs: dict[str, Any] | None, base: dict[str, Any]) -> dict[str, Any]:
    """The sampler parameters a request's generation kwargs ask for, on top of ``base`` (resolved params).

    Raises ValueError for a key dpbench cannot honour or a contradiction (see the module doc).
    """
    from ..params import parse_bool

    kw = {k: v for k, v in (gen_kwargs or {}).items() if v is not None}
    unknown = sorted(set(kw) - set(GEN_KWARGS))
    if unknown:
        shown = ", ".join(f"{k}={kw[k]!r}" for k in unknown)
        raise ValueError(f"dpbench cannot honour gen_kwargs {shown}: a diffusion sampler has no such setting "
                         f"(it honours {', '.join(GEN_KWARGS)}; sampler settings go in --model_args)")
    over: dict[str, Any] = {}
    if "max_gen_toks" in kw:
        n = int(kw["max_gen_toks"])
        if n < 1:
            raise ValueError(f"max_gen_toks must be >= 1, got {n}")
        block = int(base.get("block_length", 32))
        gen = block * math.ceil(n / block)
        if gen != base.get("gen_length"):
            over["gen_length"] = gen
            if "steps" in base:  # a fixed-step baseline keeps its steps per block
                over["steps"] = int(base["steps"]) // (int(base["gen_length"]) // block) * (gen // block)
    sample = parse_bool(kw["do_sample"], "do_sample") if "do_sample" in kw else None
    temp = float(kw["temperature"]) if "temperature" in kw else None
    if sample is True:
        t = 1.0 if temp is None else temp
        if t <= 0:
            raise ValueError(f"do_sample=True with temperature={temp}: give a temperature > 0 to sample")
        over["temperature"] = t
    elif temp is not None and temp > 0:
        if sample is False:
            raise ValueError(f"gen_kwargs temperature={temp} with do_sample=False (lm-eval's HF models decode greedily "
                             f"then): give do_sample=True to sample at {temp}, or temperature=0")
        over["temperature"] = temp
    elif sample is False or temp == 0:
        if float(base.get("temperature", 0.0)) > 0:
            raise ValueError(f"the model args set temperature={base['temperature']} but the task's generation kwargs say "
                             f"greedy (do_sample=False / temperature=0); sample through lm-eval instead: "
                             f"--gen_kwargs do_sample=True,temperature={base['temperature']}")
    return {k: v for k, v in over.items() if base.get(k) != v}


def stops_of(until: Any) -> tuple[str, ...]:
    return (until,) if isinstance(until, str) else tuple(s for s in (until or ()) if s)


__all__ = ["GEN_KWARGS", "sampler_overrides", "stops_of"]
