"""Native Dream: a bidirectional Qwen2-layout masked diffusion LM.

Dream-v0 (and dParallel-Dream) checkpoints are Qwen2.5-7B weights trained as a
masked diffusion model: same tensor names (``model.layers.N.self_attn.q_proj``
...), GQA, biases on q/k/v only, RoPE theta 1e6, an untied head, and no causal
mask. The published modeling code no longer constructs under transformers 5.x,
so dpbench carries this small re-implementation that reads Dream's own
``config.json`` and safetensors.

Dream's logits are *shifted* (position i-1 predicts token i, a leftover of its
autoregressive initialisation). This module returns them raw; `DiffusionLM`
with ``shift_logits=True`` moves them into place.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .llada import RMSNorm, attend, init_weights, run_layers


class DreamConfig(PretrainedConfig):
    """Reads the keys of Dream's published ``config.json`` (Qwen2 names); defaults are Dream-v0-7B."""

    model_type = "Dream"

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1000000.0,
        rope_scaling: dict | None = None,
        use_sliding_window: bool = False,
        sliding_window: int | None = None,
        max_window_layers: int = 28,
        attention_dropout: float = 0.0,
        tie_word_embeddings: bool = False,
        mask_token_id: int = 151666,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads if num_key_value_heads is not None else num_attention_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        # `rope_scaling` is a deprecated property on transformers 5 configs; keep
        # Dream's value under its own name so validation can see it.
        self.dream_rope_scaling = rope_scaling
        self.use_sliding_window = use_sliding_window
        self.sliding_window = sliding_window
        self.max_window_layers = max_window_layers
        self.attention_dropout = attention_dropout
        self.mask_token_id = mask_token_id
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    def validate_supported(self) -> None:
        """Refuse Qwen2/Dream variants this implementation does not compute."""
        hint = "(pass --trust-remote-code to use the checkpoint's own modeling code)"
        scaling = self.dream_rope_scaling
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise ValueError(f"unsupported Dream config: rope_scaling={scaling!r}; only plain RoPE (null) works {hint}")
        if self.use_sliding_window:
            raise ValueError(f"unsupported Dream config: use_sliding_window=True; only full attention works {hint}")
        if str(self.hidden_act).lower() != "silu":
            raise ValueError(f"unsupported Dream config: hidden_act={self.hidden_act!r}; only 'silu' works {hint}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads must be a multiple of num_key_value_heads, "
                f"got {self.num_attention_heads} and {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")


class DreamAttention(nn.Module):
    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None, kv=None
    ) -> torch.Tensor:
        return self.o_proj(attend(self, self.q_proj(x), self.k_proj(x), self.v_proj(x), cos, sin, mask, kv))


class DreamMLP(nn.Module):
    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DreamDecoderLayer(nn.Module):
    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DreamAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = DreamMLP(config)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None, kv=None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamBaseModel(nn.Module):
    """``model.*`` in the checkpoints: embeddings, layers, final norm."""

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache=None,
    ) -> torch.Tensor:
        """See `run_layers` for ``cache``."""
        x = self.embed_tokens(input_ids)
        # Qwen2 rounds the RoPE tables to the activation dtype before rotating (LLaDA does not).
        x = run_layers(x, self.layers, attention_mask, position_ids, self.config.head_dim, self.config.rope_theta, x.dtype, cache)
        return self.norm(x)


class DreamModel(PreTrainedModel):
    """Dream-v0 / dParallel-Dream with the published parameter names; ``forward`` returns raw (shifted) logits."""

    config_class = DreamConfig
    base_model_prefix = "model"
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True
    supports_kv_cache = True  # forward(..., cache=CacheView) for dpbench's cache=prefix|dual
    supports_logits_range = True  # forward(..., logits_range=(lo, hi)): raw logits of those positions only

    def __init__(self, config: DreamConfig) -> None:
        super().__init__(config)
        config.validate_supported()
        self.model = DreamBaseModel(config)
        # A tied head reuses the embedding matrix in forward (as LLaDA's weight_tying does),
        # so no transformers tying machinery is involved; Dream's own checkpoints are untied.
        tied = config.tie_word_embeddings
        self.lm_head = None if tied else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache=None,
        logits_range: tuple[int, int] | None = None,
        **_: Any,
    ) -> MaskedLMOutput:
        h = self.model(input_ids, attention_mask, position_ids, cache)
        if logits_range is not None:
            h = h[:, logits_range[0] : logits_range[1]]
        head = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return MaskedLMOutput(logits=F.linear(h, head))


def _register_auto_classes() -> None:
    """As `llada._register_auto_classes`: the native Dream round-trips through the Auto classes."""
    from transformers import AutoConfig, AutoModel

    AutoConfig.register("Dream", DreamConfig, exist_ok=True)
    AutoModel.register(DreamConfig, DreamModel, exist_ok=True)


_register_auto_classes()
