"""Training the built-in tiny models (`pretrain`)."""

from .card import save_model
from .config import PretrainConfig
from .pretrain import (
    PretrainResult,
    encode_docs,
    evaluate,
    make_batch,
    masked_diffusion_loss,
    pretrain,
)

save_checkpoint = save_model  # the earlier name

__all__ = [
    "PretrainConfig",
    "PretrainResult",
    "encode_docs",
    "evaluate",
    "make_batch",
    "masked_diffusion_loss",
    "pretrain",
    "save_checkpoint",
    "save_model",
]
