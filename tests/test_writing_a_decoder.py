"""The window-policy example of docs/samplers.md ("Writing a decoder") runs as written.

The code block is taken from the doc and executed, so the doc cannot drift from what works.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dpbench.samplers import get_sampler, registry

DOC = Path(__file__).parents[1] / "docs" / "samplers.md"


@pytest.fixture
def whole_answer(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # keep the example out of other tests
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text().split("## Writing a decoder", 1)[1], re.S)
    (code,) = [b for b in blocks if "class WholeAnswer(Policy)" in b]
    exec(compile(code, str(DOC), "exec"), {})
    return lambda **p: get_sampler("whole-answer", **p)


def _batch(tok):
    enc = tok(["1+2=", "What is 33 + 4 + 18?", "x"], return_tensors="pt", padding=True, padding_side="left",
              add_special_tokens=False)
    return enc.input_ids, enc.attention_mask


def test_the_window_policy_example_decodes(whole_answer, tiny_lm, char_tokenizer):
    ids, am = _batch(char_tokenizer)
    out = whole_answer(gen_length=16, block_length=16, threshold=0.9).generate(tiny_lm, ids, am)
    assert not (out.answers == tiny_lm.mask_id).any()
    assert bool((out.nfe >= 1).all()) and bool((out.nfe <= 16).all())
    # A batch gives each sample what it gets alone.
    for i in range(ids.shape[0]):
        alone = whole_answer(gen_length=16, block_length=16).generate(tiny_lm, ids[i : i + 1, am[i].bool()])
        assert alone.answers[0].tolist() == out.answers[i].tolist() and int(alone.nfe[0]) == int(out.nfe[i])


def test_its_limits_behave_as_the_rule_says(whole_answer, tiny_lm, char_tokenizer):
    ids, am = _batch(char_tokenizer)
    one_at_a_time = whole_answer(gen_length=16, block_length=16, threshold=1.0).generate(tiny_lm, ids, am)
    assert one_at_a_time.nfe.tolist() == [16, 16, 16]  # confidence >= 1 almost never: the surest token only
    everything = whole_answer(gen_length=16, block_length=16, threshold=0.0).generate(tiny_lm, ids, am)
    assert everything.nfe.tolist() == [1, 1, 1]  # every masked token passes at once
    # With one block spanning the answer, confidence-threshold decoding is the same thing.
    ref = get_sampler("confidence", gen_length=16, block_length=16, threshold=0.9).generate(tiny_lm, ids, am)
    got = whole_answer(gen_length=16, block_length=16, threshold=0.9).generate(tiny_lm, ids, am)
    assert torch.equal(ref.sequences, got.sequences) and torch.equal(ref.nfe, got.nfe)


def test_a_rule_sees_where_its_positions_sit(tiny_lm, char_tokenizer):
    """StepInputs.window: answer positions and blocks of the window, here for multiblock's windows."""
    from dpbench.samplers.multiblock import MultiBlockSampler

    seen = []

    class Spy(MultiBlockSampler):
        def select(self, s):
            seen.append((s.window.cols.clone(), s.window.blocks.clone(), s.is_mask.clone()))
            return super().select(s)

    ids, am = _batch(char_tokenizer)
    Spy(gen_length=24, block_length=8, block_add_threshold=0.0, decoded_token_threshold=0.0).generate(tiny_lm, ids, am)
    assert any(int(b.max()) > int(b.min()) for _, b, _ in seen)  # several blocks in one window
    for cols, blocks, _ in seen:
        assert torch.equal(blocks, cols // 8) and int(cols.max()) < 24
