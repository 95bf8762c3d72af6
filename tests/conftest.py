"""Shared fixtures: tiny random models of the built-in architecture and of a transformers masked LM."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The C step kernel is built once per test session, into a fresh directory (samplers/kernel.py).
if "DPBENCH_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["DPBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="dpbench-test-cache-")

import pytest
import torch

from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def char_tokenizer():
    return build_char_tokenizer()


def make_tiny_llada(tokenizer, *, seed: int = 0, sharpen: float = 80.0, d_model: int = 32, n_layers: int = 2) -> LLaDAModelLM:
    """A random built-in model whose logits are scaled up so that some positions are
    confident and others not: thresholds then actually change what gets committed."""
    torch.manual_seed(seed)
    cfg = LLaDAConfig(
        d_model=d_model, n_layers=n_layers, n_heads=4, n_kv_heads=2, mlp_hidden_size=2 * d_model,
        vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id, rope_theta=10000.0,
    )
    model = LLaDAModelLM(cfg).eval()
    with torch.no_grad():
        model.model.transformer.ff_out.weight.mul_(sharpen)
    return model


def save_tiny_model(path, *, sharpen: float | None = None, **config) -> str:
    """Save a random built-in model (seed 0; 1 layer, d_model 32 unless ``config`` says otherwise) with the
    character tokenizer into ``path``; ``sharpen`` scales the output head as in `make_tiny_llada`."""
    tok = build_char_tokenizer()
    cfg = LLaDAConfig(**{"d_model": 32, "n_layers": 1, "n_heads": 2, "mlp_hidden_size": 64, "max_sequence_length": 128,
                         **config}, vocab_size=len(tok), mask_token_id=tok.mask_token_id)
    torch.manual_seed(0)
    model = LLaDAModelLM(cfg)
    if sharpen is not None:
        with torch.no_grad():
            model.model.transformer.ff_out.weight.mul_(sharpen)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_lm(char_tokenizer) -> DiffusionLM:
    model = make_tiny_llada(char_tokenizer)
    return DiffusionLM(model, mask_id=char_tokenizer.mask_token_id, eos_token_ids=[char_tokenizer.eos_token_id])


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, char_tokenizer, tiny_lm) -> str:
    """`tiny_lm` saved as a local model directory (what `--model DIR` / `pretrained=DIR` load)."""
    d = tmp_path_factory.mktemp("tiny")
    tiny_lm.module.save_pretrained(d)
    char_tokenizer.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def bert_lm(char_tokenizer) -> DiffusionLM:
    """A transformers masked LM (BERT) with random weights, driven through the same adapter."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(1)
    cfg = BertConfig(
        vocab_size=len(char_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=char_tokenizer.pad_token_id,
    )
    model = BertForMaskedLM(cfg).eval()
    with torch.no_grad():
        model.cls.predictions.decoder.weight.mul_(8.0)
    return DiffusionLM(model, mask_id=char_tokenizer.mask_token_id, eos_token_ids=[char_tokenizer.eos_token_id])
