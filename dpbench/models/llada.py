"""dpbench's built-in masked-diffusion architecture, LLaDA-style.

A bidirectional Llama-like transformer (RMSNorm, RoPE, SwiGLU, no causal mask).
Parameter names follow the published LLaDA checkpoints
(``model.transformer.blocks.N.q_proj`` ...), and the config reads LLaDA's own
``config.json`` keys, so the same class serves the tiny models dpbench trains
and the real LLaDA-8B weights.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"

    def __init__(
        self,
        d_model: int = 4096,
        n_layers: int = 32,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        mlp_hidden_size: int = 12288,
        vocab_size: int = 126464,
        embedding_size: int | None = None,
        max_sequence_length: int = 4096,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        weight_tying: bool = False,
        include_bias: bool = False,
        include_qkv_bias: bool = False,
        block_type: str = "llama",
        layer_norm_type: str = "rms",
        activation_type: str = "silu",
        rope: bool = True,
        alibi: bool = False,
        rope_full_precision: bool = True,
        mask_token_id: int = 126336,
        init_std: float = 0.02,
        **kwargs: Any,
    ) -> None:
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads if n_kv_heads is not None else n_heads
        self.mlp_hidden_size = mlp_hidden_size
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size if embedding_size is not None else vocab_size
        self.max_sequence_length = max_sequence_length
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.weight_tying = weight_tying
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.block_type = block_type
        self.layer_norm_type = layer_norm_type
        self.activation_type = activation_type
        self.rope = rope
        self.alibi = alibi
        self.rope_full_precision = rope_full_precision
        self.mask_token_id = mask_token_id
        self.init_std = init_std
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    def validate_supported(self) -> None:
        """Refuse LLaDA/OLMo variants this implementation does not compute.

        Keys absent from a config take the value LLaDA-8B uses, so only a config
        that asks for something else (biases, ALiBi, QK-norm, ...) is refused.
        """
        expected = {
            "block_type": "llama",
            "layer_norm_type": "rms",
            "activation_type": "silu",
            "rope": True,
            "alibi": False,
            "include_bias": False,
            "include_qkv_bias": False,
            # OLMo options LLaDA-8B leaves off; each would change the math or the tensor names.
            "attention_layer_norm": False,
            "layer_norm_with_affine": True,
            "bias_for_layer_norm": None,
            "input_emb_norm": False,
            "scale_logits": False,
            "clip_qkv": None,
            "multi_query_attention": None,
            "block_group_size": 1,
        }
        for key, want in expected.items():
            got = getattr(self, key, want)
            if isinstance(want, str):
                got = str(got).lower()
            if key in ("bias_for_layer_norm", "multi_query_attention") and got is False:
                got = None  # false and null both mean "off"
            if got != want:
                raise ValueError(
                    f"unsupported LLaDA config: {key}={getattr(self, key)!r}; dpbench's native "
                    f"LLaDA supports only {key}={want!r} (pass --trust-remote-code to use the "
                    f"checkpoint's own modeling code)"
                )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got {self.d_model} and {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads must be a multiple of n_kv_heads, got {self.n_heads} and {self.n_kv_heads}")
        if self.embedding_size < self.vocab_size:
            raise ValueError(f"embedding_size must be >= vocab_size, got {self.embedding_size} < {self.vocab_size}")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 (as LLaDA and Llama do) so bf16 weights stay stable.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables (B, 1, L, head_dim) for rotate-half RoPE at the given positions.

    The sin table carries rotate-half's sign, [-sin, sin], so `apply_rotary` swaps halves
    without negating one: (-a) * b and a * (-b) are the same float, so nothing changes but an op.
    """
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim)
    )
    freqs = position_ids.float()[..., None] * inv_freq
    sin = freqs.sin()
    return torch.cat((freqs, freqs), dim=-1)[:, None].cos().to(dtype), torch.cat((-sin, sin), dim=-1)[:, None].to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, in the tables' dtype (float32 tables = LLaDA's
    rope_full_precision), returned in x's dtype. ``sin`` is the signed table of `rotary_cos_sin`."""
    y = x if x.dtype == cos.dtype else x.to(cos.dtype)  # skip the no-op cast: ~100 calls a forward
    y1, y2 = y.chunk(2, dim=-1)
    out = y * cos + torch.cat((y2, y1), dim=-1) * sin
    return out if out.dtype == x.dtype else out.to(x.dtype)


def sdpa_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, L) padding mask -> additive (B, 1, 1, L) mask for SDPA; None when nothing is padded.

    Bidirectional: every query sees every non-pad key. Queries at pad positions
    see the same keys; their outputs are never read.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    keep = attention_mask[:, None, None, :].bool()
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


def position_ids_from_mask(attention_mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    """Positions count real tokens only, so a left-padded row sees the positions it has alone."""
    if attention_mask is None:
        return torch.arange(length, device=device).expand(batch, length)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attend(heads: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
           sin: torch.Tensor, mask: torch.Tensor | None, kv=None) -> torch.Tensor:
    """Bidirectional attention shared by the native LLaDA and Dream layers.

    ``q``/``k``/``v`` are projections (B, N, heads * head_dim); ``heads`` carries
    ``n_heads``, ``n_kv_heads`` and ``head_dim``. RoPE, then the KV cache (a
    ``(kv_cache.CacheView, layer)`` pair that stores, or merges with cached keys/values),
    then GQA repetition and SDPA with no causal mask. Returns (B, N, n_heads * head_dim).
    """
    b, n, _ = q.shape
    q = q.view(b, n, heads.n_heads, heads.head_dim).transpose(1, 2)
    k = k.view(b, n, heads.n_kv_heads, heads.head_dim).transpose(1, 2)
    v = v.view(b, n, heads.n_kv_heads, heads.head_dim).transpose(1, 2)
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    if kv is not None:
        k, v = kv[0].update(kv[1], k, v)
    if heads.n_kv_heads != heads.n_heads:  # GQA: each kv head serves a group of query heads
        rep = heads.n_heads // heads.n_kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
    return a.transpose(1, 2).reshape(b, n, -1)


def run_layers(x: torch.Tensor, layers: nn.ModuleList, attention_mask: torch.Tensor | None,
               position_ids: torch.Tensor | None, head_dim: int, theta: float, rope_dtype: torch.dtype,
               cache=None) -> torch.Tensor:
    """Positions, RoPE tables and the attention mask, then every layer (LLaDA and Dream alike).

    With ``cache`` (a `kv_cache.CacheView` with an ``index``) ``x`` and ``position_ids``
    cover the query window only; ``attention_mask`` covers all keys.
    """
    b, n = x.shape[:2]
    if position_ids is None:
        position_ids = position_ids_from_mask(attention_mask, b, n, x.device)
    cos, sin = rotary_cos_sin(position_ids, head_dim, theta, rope_dtype)
    mask = sdpa_mask(attention_mask, x.dtype)
    for i, layer in enumerate(layers):
        x = layer(x, cos, sin, mask, None if cache is None else (cache, i))
    return x


def init_weights(module: nn.Module, std: float) -> None:
    """Normal(0, std) weights, zero biases, unit norms: the random init of both native models."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, RMSNorm):
        nn.init.ones_(module.weight)


class LLaDABlock(nn.Module):
    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        d, hd = config.d_model, config.d_model // config.n_heads
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, config.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)  # gate
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=False)  # down

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None, kv=None
    ) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + self.attn_out(attend(self, self.q_proj(h), self.k_proj(h), self.v_proj(h), cos, sin, mask, kv))
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDAModel(nn.Module):
    """Holds ``transformer`` so parameter names match ``model.transformer.*`` in the checkpoints."""

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        config.validate_supported()
        self.config = config
        modules = {
            "wte": nn.Embedding(config.embedding_size, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=False)
        self.transformer = nn.ModuleDict(modules)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache=None,
        logits_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """See `run_layers` for ``cache``; ``logits_range=(lo, hi)``: logits of those positions only."""
        cfg, t = self.config, self.transformer
        x = t.wte(input_ids)
        rope_dtype = torch.float32 if cfg.rope_full_precision else x.dtype
        x = run_layers(x, t.blocks, attention_mask, position_ids, cfg.d_model // cfg.n_heads, cfg.rope_theta, rope_dtype, cache)
        if logits_range is not None:
            x = x[:, logits_range[0] : logits_range[1]]  # the head is the costliest layer at a 126k vocab
        x = t.ln_f(x)
        head = t.wte.weight if self.config.weight_tying else t.ff_out.weight
        return F.linear(x, head)


class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True
    supports_kv_cache = True  # forward(..., cache=CacheView) for dpbench's cache=prefix|dual
    supports_logits_range = True  # forward(..., logits_range=(lo, hi)): the output head on those positions only

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.init_std)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.transformer.wte

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache=None,
        logits_range: tuple[int, int] | None = None,
        **_: Any,
    ) -> MaskedLMOutput:
        return MaskedLMOutput(logits=self.model(input_ids, attention_mask, position_ids, cache, logits_range))


def count_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())


def _register_auto_classes() -> None:
    """Make the built-in architecture known to the Auto classes, so save_pretrained /
    from_pretrained round-trip without remote code (runs when this module is imported)."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    AutoConfig.register("llada", LLaDAConfig, exist_ok=True)
    AutoModel.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
    AutoModelForMaskedLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)


_register_auto_classes()
