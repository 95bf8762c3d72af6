"""Models: the `DiffusionLM` adapter, loading, and the built-in LLaDA-style and Dream architectures.

Only the adapter is imported eagerly; the architectures and the loader (which import
transformers, seconds on a CPU) load on first use of their names, so a sampler or a
command that only validates its arguments stays fast.
"""

from ..lazy import lazy_package
from .adapter import DiffusionLM

_LAZY = {
    "build_char_tokenizer": "char_tokenizer",
    "DreamConfig": "dream", "DreamModel": "dream",
    "LLaDAConfig": "llada", "LLaDAModelLM": "llada",
    "PRESETS": "loading", "ModelNotFoundError": "loading", "load_model": "loading",
    "resolve_device": "loading", "resolve_dtype": "loading",
}


lazy_package(__name__, _LAZY)


__all__ = ["DiffusionLM", *sorted(_LAZY)]
