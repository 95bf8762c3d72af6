"""Parameter strings from command lines and config files -> typed values, one way everywhere.

Every command that builds a sampler (run, bench, generate, sweep, pretrain, distill, the
lm-eval bridge) goes through `dpbench.samplers.build_sampler`, which types CLI strings with
`coerce`; config files and lm-eval model args use `parse_bool` for their switches. An
unparseable value is an error that names the key and the accepted spellings, never a silent
default.
"""

from __future__ import annotations

from typing import Any

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_bool(value: Any, name: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case) or a bool; anything else is a ValueError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    low = str(value).strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ValueError(f"{name} must be a bool, got {value!r} (true/false, yes/no, on/off or 1/0)")


def coerce(name: str, value: Any, default: Any) -> Any:
    """A string ``value`` typed like ``default`` (bool, int, float); other values pass through."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    if isinstance(default, bool):
        return parse_bool(value, name)
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a {type(default).__name__}, got {value!r}") from None
    return value


def parse_pairs(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", "a=1,b=2"]`` -> ``{"k": "v", "a": "1", "b": "2"}``; values stay strings (typed later)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        for item in pair.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected key=value, got {item!r}")
            out[key.strip()] = value.strip()
    return out


def cache_spec(spec: str) -> dict[str, Any]:
    """Engine parameters of one cache entry as `dpbench bench --cache` spells it: a cache mode
    (``none``, ``prefix``, ``dual``), ``dual+N`` (dual with N lookahead positions) or ``graph``
    (no cache, the forward replayed from a CUDA graph)."""
    if spec == "graph":
        return {"cache": "none", "cuda_graph": True}
    mode, plus, n = spec.partition("+")
    if not plus:
        return {"cache": spec}
    if mode != "dual" or not n.isdigit():
        raise ValueError(
            f"cache entries are none, prefix, dual, dual+N (N = lookahead positions, e.g. dual+16) or graph, got {spec!r}")
    return {"cache": "dual", "dual_lookahead": int(n)}


__all__ = ["FALSE", "TRUE", "cache_spec", "coerce", "parse_bool", "parse_pairs"]
