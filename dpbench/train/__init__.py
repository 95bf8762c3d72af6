"""Training the built-in tiny models (`pretrain`)."""

from .pretrain import (
    PretrainConfig,
    PretrainResult,
    encode_docs,
    evaluate,
    make_batch,
    masked_diffusion_loss,
    pretrain,
    save_checkpoint,
)

__all__ = [
    "PretrainConfig",
    "PretrainResult",
    "encode_docs",
    "evaluate",
    "make_batch",
    "masked_diffusion_loss",
    "pretrain",
    "save_checkpoint",
]
