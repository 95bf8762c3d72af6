"""Models: the `DiffusionLM` adapter, loading, and the built-in LLaDA-style and Dream architectures.

Only the adapter is imported eagerly; the architectures and the loader (which import
transformers, seconds on a CPU) load on first use of their names, so a sampler or a
command that only validates its arguments stays fast.
"""

from importlib import import_module

from .adapter import DiffusionLM

_LAZY = {
    "build_char_tokenizer": "char_tokenizer",
    "DreamConfig": "dream", "DreamModel": "dream",
    "LLaDAConfig": "llada", "LLaDAModelLM": "llada",
    "PRESETS": "loading", "ModelNotFoundError": "loading", "load_model": "loading",
    "resolve_device": "loading", "resolve_dtype": "loading",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


__all__ = ["DiffusionLM", *sorted(_LAZY)]
