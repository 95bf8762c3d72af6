"""Training the built-in tiny models (`pretrain`). Names load on first use (`dpbench.lazy`)."""

from ..lazy import lazy_package

_LAZY = {
    "save_model": "card",
    "PretrainConfig": "config",
    **dict.fromkeys(("PretrainResult", "encode_docs", "evaluate", "make_batch", "masked_diffusion_loss", "pretrain"),
                    "pretrain"),
}

lazy_package(__name__, _LAZY)


__all__ = sorted(_LAZY)
