"""Models: the `DiffusionLM` adapter, loading, and the built-in LLaDA-style architecture."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .adapter import DiffusionLM
from .char_tokenizer import build_char_tokenizer
from .dream import DreamConfig, DreamModel
from .llada import LLaDAConfig, LLaDAModelLM
from .loading import PRESETS, ModelNotFoundError, load_model, resolve_device, resolve_dtype

# Register the built-in architecture with the Auto classes so save_pretrained /
# from_pretrained round-trip without remote code.
AutoConfig.register("llada", LLaDAConfig, exist_ok=True)
AutoModel.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
AutoModelForMaskedLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
AutoConfig.register("Dream", DreamConfig, exist_ok=True)
AutoModel.register(DreamConfig, DreamModel, exist_ok=True)

__all__ = [
    "DiffusionLM",
    "DreamConfig",
    "DreamModel",
    "LLaDAConfig",
    "LLaDAModelLM",
    "ModelNotFoundError",
    "PRESETS",
    "build_char_tokenizer",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]
