"""Registry behaviour, validation errors, the built-in model and the adapter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dpbench.models import DiffusionLM, LLaDAModelLM, load_model
from dpbench.samplers import available, get_sampler, register_sampler
from dpbench.samplers import registry as reg
from dpbench.samplers.base import BlockSampler, best_per_row


def test_available_lists_builtins():
    assert {"baseline", "dparallel", "confidence"} <= set(available())


def test_unknown_sampler_suggests_close_names():
    with pytest.raises(ValueError, match=r"did you mean 'dparallel'") as err:
        get_sampler("dparalel")
    assert "available:" in str(err.value)


def test_aliases_resolve():
    assert type(get_sampler("few-step", steps=64, gen_length=64)).name == "baseline"
    assert type(get_sampler("fast-dllm")).name == "confidence"


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("baseline", {"stepz": 4}, r"unknown parameter\(s\) stepz .*valid: gen_length, block_length"),
        ("baseline", {"gen_length": 64, "block_length": 24}, r"block_length must .* divide gen_length \(64\), got 24"),
        ("baseline", {"gen_length": 64, "block_length": 16, "steps": 30}, r"multiple of the block count .* got 30"),
        ("baseline", {"remasking": "lowest"}, r"remasking must be one of low_confidence, random, got 'lowest'"),
        ("dparallel", {"threshold": -0.1}, r"threshold .* must be >= 0 and finite, got -0.1"),
        ("dparallel", {"threshold": float("inf")}, r"threshold .* must be >= 0 and finite, got inf"),
        ("confidence", {"threshold": 1.5}, r"threshold .* must be in \[0, 1\], got 1.5"),
        ("confidence", {"temperature": -1}, r"temperature must be >= 0"),
        ("dparallel", {"threshold": "abc"}, r"threshold must be a float, got 'abc'"),
        ("dparallel", {"early_stop": "maybe"}, r"early_stop must be a bool, got 'maybe'"),
    ],
)
def test_bad_params_raise_clear_errors(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_sampler(name, **params)


def test_string_params_are_typed():
    smp = get_sampler("baseline", steps="64", gen_length="64", block_length="16", early_stop="true")
    assert smp.config.steps == 64 and smp.config.early_stop is True


def test_register_decorator_and_entry_points(monkeypatch, char_tokenizer, tiny_lm):
    @register_sampler("test-greedy-one")
    class OnePerStep(BlockSampler):
        """Commit the single most confident token per step."""

        def select(self, s):
            return best_per_row(s.confidence.masked_fill(~s.is_mask, float("-inf")))

    try:
        out = get_sampler("test-greedy-one", gen_length=8, block_length=4).generate(tiny_lm, torch.tensor([[5, 6]]))
        assert int(out.nfe) == 8
        with pytest.raises(ValueError, match="already registered"):
            register_sampler("test-greedy-one")(OnePerStep)
    finally:
        reg._REGISTRY.pop("test-greedy-one")

    # A third-party package's entry point is loaded on first use.
    class ThirdParty(OnePerStep):
        pass

    ep = SimpleNamespace(name="thirdparty", load=lambda: ThirdParty)
    monkeypatch.setattr(reg, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(reg, "entry_points", lambda group: [ep] if group == "dpbench.samplers" else [])
    try:
        assert "thirdparty" in available()
        assert isinstance(get_sampler("thirdparty", gen_length=8, block_length=8), ThirdParty)
    finally:
        reg._REGISTRY.pop("thirdparty", None)


def test_save_load_round_trip(tmp_path, char_tokenizer, tiny_lm):
    tiny_lm.module.save_pretrained(tmp_path)
    char_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    lm, tok = load_model(str(tmp_path), device="cpu")
    assert isinstance(lm.module, LLaDAModelLM)
    assert lm.mask_id == char_tokenizer.mask_token_id and lm.eos_token_ids[0] == char_tokenizer.eos_token_id
    ids = torch.tensor([[5, 17, 30, 2, 2, 2]])
    with torch.no_grad():
        assert torch.equal(lm.logits(ids), tiny_lm.logits(ids))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert lm.device.type == "cpu" and lm.dtype == torch.float32


def test_parameter_names_follow_llada(tiny_lm):
    names = set(dict(tiny_lm.module.named_parameters()))
    for part in ("attn_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_norm", "ff_proj", "up_proj", "ff_out"):
        assert f"model.transformer.blocks.1.{part}.weight" in names
    assert {"model.transformer.wte.weight", "model.transformer.ln_f.weight", "model.transformer.ff_out.weight"} <= names


def test_left_padding_matches_unpadded_logits(char_tokenizer, tiny_lm):
    batch = char_tokenizer(["1+2=", "What is 33 + 4?"], return_tensors="pt", padding=True)
    alone = char_tokenizer("1+2=", return_tensors="pt").input_ids
    with torch.no_grad():
        padded = tiny_lm.logits(batch.input_ids, batch.attention_mask)
        single = tiny_lm.logits(alone)
    n = alone.shape[1]
    torch.testing.assert_close(padded[0, -n:], single[0], rtol=1e-5, atol=1e-5)


def test_shift_logits_is_aligned():
    """Dream-style: the row at position i-1 predicts token i."""

    class PositionEcho(torch.nn.Module):
        # Row j of the output peaks at vocab index j, so alignment is visible.
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None):
            n = input_ids.shape[1]
            return SimpleNamespace(logits=torch.eye(n)[None].expand(input_ids.shape[0], n, n))

    ids = torch.zeros((2, 6), dtype=torch.long)
    shifted = DiffusionLM(PositionEcho(), mask_id=0, eos_token_ids=[1], shift_logits=True).logits(ids).argmax(-1)
    plain = DiffusionLM(PositionEcho(), mask_id=0, eos_token_ids=[1]).logits(ids).argmax(-1)
    assert plain[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert shifted[0].tolist() == [0, 0, 1, 2, 3, 4]


def test_adapter_requires_eos():
    with pytest.raises(ValueError, match="eos_token_ids"):
        DiffusionLM(torch.nn.Linear(1, 1), mask_id=0, eos_token_ids=[])


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown model 'tiny-arith-dparalel'.*did you mean"):
        load_model("tiny-arith-dparalel")


def test_unreachable_hub_says_how_to_use_a_local_dir(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"--model DIR"):
        load_model("nobody-here/not-a-model", device="cpu")
