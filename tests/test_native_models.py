"""Native LLaDA and Dream: published checkpoint layout, equality with transformers' Llama/Qwen2, padding, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from dpbench.models import (
    DiffusionLM,
    DreamConfig,
    DreamModel,
    LLaDAConfig,
    LLaDAModelLM,
    build_char_tokenizer,
    load_model,
)
from dpbench.models.llada import count_parameters
from dpbench.samplers import get_sampler

# The published config.json files (keys and values as released); tiny tests override the sizes.
LLADA_8B = {
    "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
    "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM"},
    "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": 4096,
    "embedding_dropout": 0.0, "embedding_size": 126464, "eos_token_id": 126081, "flash_attention": False,
    "include_bias": False, "include_qkv_bias": False, "init_device": "meta", "init_fn": "mitchell",
    "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
    "mask_token_id": 126336, "max_sequence_length": 4096, "mlp_hidden_size": 12288, "mlp_ratio": 4,
    "model_type": "llada", "multi_query_attention": None, "n_heads": 32, "n_kv_heads": 32, "n_layers": 32,
    "pad_token_id": 126081, "precision": "amp_bf16", "residual_dropout": 0.0, "rms_norm_eps": 1e-05,
    "rope": True, "rope_full_precision": True, "rope_theta": 500000.0, "scale_logits": False,
    "use_cache": False, "vocab_size": 126464, "weight_tying": False,
}
DREAM_7B = {
    "architectures": ["DreamModel"], "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
    "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "mask_token_id": 151666,
    "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "Dream",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "pad_token_id": 151643,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": False, "use_sliding_window": False,
    "vocab_size": 152064,
}
TOK = build_char_tokenizer()  # ~100 ids; the tiny models have 128
V, MASK = 128, TOK.mask_token_id
TINY_LLADA = {**LLADA_8B, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "mlp_hidden_size": 96,
              "vocab_size": V, "embedding_size": V, "mask_token_id": MASK, "eos_token_id": TOK.eos_token_id,
              "pad_token_id": TOK.pad_token_id, "max_sequence_length": 256}
TINY_DREAM = {**DREAM_7B, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": V, "mask_token_id": MASK,
              "eos_token_id": TOK.eos_token_id, "bos_token_id": TOK.bos_token_id, "pad_token_id": TOK.pad_token_id,
              "max_position_embeddings": 256}


def random_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Weights big enough (std 0.2, norms around 1) that a wrong computation shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight") or name.endswith("ln_f.weight") or "layernorm" in name:
            out[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[name] = 0.2 * torch.randn(shape, generator=g)
    return out


def llada_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    d, hd, f = c["d_model"], c["d_model"] // c["n_heads"], c["mlp_hidden_size"]
    s = {"model.transformer.wte.weight": (c["embedding_size"], d), "model.transformer.ln_f.weight": (d,),
         "model.transformer.ff_out.weight": (c["embedding_size"], d)}
    for i in range(c["n_layers"]):
        p = f"model.transformer.blocks.{i}."
        s |= {p + "attn_norm.weight": (d,), p + "q_proj.weight": (d, d), p + "k_proj.weight": (c["n_kv_heads"] * hd, d),
              p + "v_proj.weight": (c["n_kv_heads"] * hd, d), p + "attn_out.weight": (d, d), p + "ff_norm.weight": (d,),
              p + "ff_proj.weight": (f, d), p + "up_proj.weight": (f, d), p + "ff_out.weight": (d, f)}
    return s


def dream_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    d, hd, f = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"], c["intermediate_size"]
    kv = c["num_key_value_heads"] * hd
    s = {"model.embed_tokens.weight": (c["vocab_size"], d), "model.norm.weight": (d,)}
    if not c["tie_word_embeddings"]:
        s["lm_head.weight"] = (c["vocab_size"], d)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s |= {p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
              p + "self_attn.q_proj.weight": (d, d), p + "self_attn.q_proj.bias": (d,),
              p + "self_attn.k_proj.weight": (kv, d), p + "self_attn.k_proj.bias": (kv,),
              p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.v_proj.bias": (kv,),
              p + "self_attn.o_proj.weight": (d, d), p + "mlp.gate_proj.weight": (f, d),
              p + "mlp.up_proj.weight": (f, d), p + "mlp.down_proj.weight": (d, f)}
    return s


def write_published(path, config: dict, weights: dict[str, torch.Tensor], n_shards: int = 3) -> None:
    """config.json + model-0000i-of-0000n.safetensors + model.safetensors.index.json, as the hub repos hold them."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    names = list(weights)
    weight_map = {}
    for i in range(n_shards):
        shard = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {n: weights[n].contiguous() for n in names[i::n_shards]}
        save_file(part, str(path / shard), metadata={"format": "pt"})
        weight_map |= {n: shard for n in part}
    total = sum(t.numel() * t.element_size() for t in weights.values())
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    TOK.save_pretrained(str(path))


def llada_to_llama(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    block = {"attn_norm": "input_layernorm", "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj",
             "v_proj": "self_attn.v_proj", "attn_out": "self_attn.o_proj", "ff_norm": "post_attention_layernorm",
             "ff_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj", "ff_out": "mlp.down_proj"}
    top = {"model.transformer.wte.weight": "model.embed_tokens.weight",
           "model.transformer.ln_f.weight": "model.norm.weight", "model.transformer.ff_out.weight": "lm_head.weight"}
    out = {}
    for name, t in w.items():
        if name in top:
            out[top[name]] = t
        else:
            _, _, _, i, mod, _ = name.split(".")
            out[f"model.layers.{i}.{block[mod]}.weight"] = t
    return out


def full_mask(b: int, n: int) -> torch.Tensor:
    """A 4D additive mask of zeros: transformers passes a prepared 4D mask through unchanged, so nothing is causal."""
    return torch.zeros(b, 1, n, n)


IDS = torch.tensor([[7, 40, 41, 12, MASK, MASK, 55, 9, MASK, 70, 3]])


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llada")
    weights = random_weights(llada_shapes(TINY_LLADA), seed=0)
    write_published(path, TINY_LLADA, weights)
    return path, weights


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dream")
    weights = random_weights(dream_shapes(TINY_DREAM), seed=1)
    write_published(path, TINY_DREAM, weights)
    return path, weights


def test_llada_published_layout_matches_transformers_llama(llada_dir):
    path, weights = llada_dir
    lm, _ = load_model(str(path), device="cpu", dtype="fp32")
    assert isinstance(lm.module, LLaDAModelLM) and not lm.shift_logits and lm.mask_id == MASK
    c = TINY_LLADA
    ref = LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=c["d_model"], intermediate_size=c["mlp_hidden_size"], num_hidden_layers=c["n_layers"],
        num_attention_heads=c["n_heads"], num_key_value_heads=c["n_kv_heads"], rms_norm_eps=c["rms_norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": c["rope_theta"]}, tie_word_embeddings=False,
        attn_implementation="eager",
    )).eval()
    ref.load_state_dict(llada_to_llama(weights), strict=True)
    with torch.no_grad():
        ours = lm.logits(IDS)
        want = ref(IDS, attention_mask=full_mask(*IDS.shape)).logits
        causal = ref(IDS).logits
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-5)
    assert (ours - causal).abs().max() > 1e-2  # the non-causal mask matters: the test can tell them apart
    # from_pretrained on the class gives the same model as load_model
    direct = LLaDAModelLM.from_pretrained(str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(direct(IDS).logits, ours, atol=0, rtol=0)


@pytest.mark.parametrize("tied", [False, True])
def test_dream_published_layout_matches_transformers_qwen2_and_shifts(tmp_path, tied):
    cfg = {**TINY_DREAM, "tie_word_embeddings": tied}
    weights = random_weights(dream_shapes(cfg), seed=2)
    write_published(tmp_path, cfg, weights, n_shards=2)
    lm, _ = load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert isinstance(lm.module, DreamModel) and lm.shift_logits
    ref = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=V, hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"], rms_norm_eps=cfg["rms_norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]}, tie_word_embeddings=tied,
        use_sliding_window=False, attn_implementation="eager",
    )).eval()
    missing, unexpected = ref.load_state_dict(weights, strict=False)
    assert not unexpected and missing == ([] if not tied else ["lm_head.weight"])
    if tied:
        ref.tie_weights()
        assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        raw = lm.forward_raw(IDS)
        want = ref(IDS, attention_mask=full_mask(*IDS.shape)).logits
        causal = ref(IDS).logits
        shifted = lm.logits(IDS)
    torch.testing.assert_close(raw, want, atol=1e-5, rtol=1e-5)
    assert (raw - causal).abs().max() > 1e-2
    # the adapter moves position i-1's prediction to position i
    torch.testing.assert_close(shifted[:, 1:], raw[:, :-1], atol=0, rtol=0)
    assert not torch.equal(shifted, raw)


def test_real_8b_configs_on_meta_device_have_published_parameter_counts():
    d, v, f, n = 4096, 126464, 12288, 32
    with torch.device("meta"):
        llada = LLaDAModelLM(LLaDAConfig(**LLADA_8B))
        dream = DreamModel(DreamConfig(**DREAM_7B))
    assert count_parameters(llada) == 2 * v * d + n * (4 * d * d + 3 * d * f + 2 * d) + d == 8_015_581_184
    h, kv, fd, vd = 3584, 4 * 128, 18944, 152064
    per_layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * fd + 2 * h
    assert count_parameters(dream) == 2 * vd * h + 28 * per_layer + h == 7_615_616_512
    assert round(count_parameters(llada) / 1e9, 1) == 8.0 and round(count_parameters(dream) / 1e9, 1) == 7.6
    assert next(llada.parameters()).device.type == "meta"


def left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(map(len, rows))
    ids = torch.tensor([[TOK.pad_token_id] * (n - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_left_padded_batch_equals_one_at_a_time(family, llada_dir, dream_dir):
    path = (llada_dir if family == "llada" else dream_dir)[0]
    lm, _ = load_model(str(path), device="cpu", dtype="fp32")
    rows = [[5, 9, MASK, 11], [30, 31, 32, MASK, MASK, 33, 34, 35, 36], [40, 41, MASK, MASK, 44, 45]]
    ids, mask = left_padded(rows)
    with torch.no_grad():
        batch_raw = lm.forward_raw(ids, mask)
        batch = lm.logits(ids, mask)
        # called directly with only the padding mask, the module derives the same positions itself
        torch.testing.assert_close(lm.module(ids, attention_mask=mask).logits, batch_raw, atol=0, rtol=0)
        for b, r in enumerate(rows):
            pad = ids.shape[1] - len(r)
            alone = torch.tensor([r])
            torch.testing.assert_close(batch_raw[b, pad:], lm.forward_raw(alone)[0], atol=1e-5, rtol=1e-5)
            # after the shift every real position but the first (whose predecessor is padding) matches too
            torch.testing.assert_close(batch[b, pad + 1 :], lm.logits(alone)[0, 1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("sampler", ["dparallel", "baseline"])
def test_samplers_run_unchanged_on_native_families(family, sampler, llada_dir, dream_dir):
    path = (llada_dir if family == "llada" else dream_dir)[0]
    lm, _ = load_model(str(path), device="cpu", dtype="fp32")
    params = {"gen_length": 16, "block_length": 8} | ({"steps": 8} if sampler == "baseline" else {})
    smp = get_sampler(sampler, **params)
    rows = [[5, 9, 11], [30, 31, 32, 33, 34]]
    alone = [smp.generate(lm, torch.tensor([r])) for r in rows]
    for out, r in zip(alone, rows):
        assert out.sequences.shape == (1, len(r) + 16)
        assert not (out.answers == MASK).any()
        assert 2 <= int(out.nfe[0]) <= 16
    ids, mask = left_padded(rows)
    batch = smp.generate(lm, ids, mask)
    for b, out in enumerate(alone):
        assert torch.equal(batch.answers[b], out.answers[0])
        assert int(batch.nfe[b]) == int(out.nfe[0])


def test_load_model_loads_into_target_dtype_and_reports(llada_dir, capsys):
    lm, _ = load_model(str(llada_dir[0]), device="cpu", dtype="bf16", verbose=True)
    assert {p.dtype for p in lm.module.parameters()} == {torch.bfloat16}
    printed = capsys.readouterr().out
    n = count_parameters(lm.module)
    assert "native LLaDAModelLM" in printed and f"{n / 1e6:.1f}M parameters" in printed
    assert "torch.bfloat16 on cpu" in printed
    with torch.no_grad():
        assert torch.isfinite(lm.logits(IDS).float()).all()


@pytest.mark.parametrize(
    "change",
    [{"block_type": "sequential"}, {"include_bias": True}, {"include_qkv_bias": True}, {"alibi": True},
     {"rope": False}, {"activation_type": "gelu"}, {"layer_norm_type": "default"}, {"attention_layer_norm": True},
     {"scale_logits": True}, {"block_group_size": 2}, {"clip_qkv": 8.0}, {"input_emb_norm": True},
     {"multi_query_attention": True}],
)
def test_unsupported_llada_variants_raise(change):
    key = next(iter(change))
    with pytest.raises(ValueError, match=f"unsupported LLaDA config: {key}="):
        LLaDAModelLM(LLaDAConfig(**{**TINY_LLADA, **change}))


@pytest.mark.parametrize(
    "change",
    [{"hidden_act": "gelu"}, {"use_sliding_window": True}, {"rope_scaling": {"type": "linear", "factor": 2.0}},
     {"num_key_value_heads": 3}],
)
def test_unsupported_dream_variants_raise(change):
    with pytest.raises(ValueError, match="unsupported Dream config|multiple of num_key_value_heads"):
        DreamModel(DreamConfig(**{**TINY_DREAM, **change}))


def test_load_model_refuses_bad_checkpoints(tmp_path, llada_dir):
    # an unsupported variant fails before any weight is read
    cfg = {**TINY_LLADA, "alibi": True}
    write_published(tmp_path / "alibi", cfg, llada_dir[1], n_shards=1)
    with pytest.raises(ValueError, match="alibi=True.*--trust-remote-code"):
        load_model(str(tmp_path / "alibi"), device="cpu")
    # a checkpoint lacking published tensor names is refused, not random-filled
    partial = {k: v for k, v in llada_dir[1].items() if "blocks.1." not in k}
    write_published(tmp_path / "partial", TINY_LLADA, partial, n_shards=2)
    with pytest.raises(ValueError, match="tensors are missing"):
        load_model(str(tmp_path / "partial"), device="cpu")
    # a directory without tokenizer files says so (not "the hub is unreachable")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps(TINY_LLADA))
    with pytest.raises(OSError, match="lacks a readable config.json or tokenizer"):
        load_model(str(bare), device="cpu")


def test_native_model_round_trips_through_save_pretrained(tmp_path, dream_dir):
    lm, tok = load_model(str(dream_dir[0]), device="cpu", dtype="fp32")
    lm.module.save_pretrained(str(tmp_path), max_shard_size="100KB")
    tok.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors.index.json").exists()
    again, _ = load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert isinstance(again, DiffusionLM) and again.shift_logits
    with torch.no_grad():
        torch.testing.assert_close(again.logits(IDS), lm.logits(IDS), atol=0, rtol=0)
    assert math.isclose(count_parameters(again.module), count_parameters(lm.module))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_with_the_signed_sin_table_is_textbook_rotate_half_exactly(dtype):
    """apply_rotary swaps halves against a [-sin, sin] table instead of negating one: the same floats."""
    from dpbench.models.llada import apply_rotary, rotary_cos_sin

    pos = torch.arange(40).expand(2, 40)
    cos, sin_signed = rotary_cos_sin(pos, 16, 10000.0, torch.float32)  # float32 tables: rope_full_precision
    half = sin_signed[..., 8:]
    assert torch.equal(sin_signed[..., :8], -half)
    sin = torch.cat((half, half), -1)  # the usual table
    x = (torch.randn(2, 4, 40, 16) * 3).to(dtype)
    y = x.float()
    want = (y * cos + torch.cat((-y[..., 8:], y[..., :8]), -1) * sin).to(dtype)
    assert torch.equal(apply_rotary(x, cos, sin_signed), want)
