"""`early_stop`: once a finished block ends in EOS, the rest is EOS without further forwards,
and the text before the first EOS is exactly what the sampler produces without it."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llada

from dpbench.models import DiffusionLM
from dpbench.samplers import get_sampler
from dpbench.textutil import answer_token_counts

SAMPLERS = [
    ("baseline", {"steps": 32}),
    ("dparallel", {"threshold": 0.5}),
    ("confidence", {"threshold": 0.9}),
    ("entropy_bound", {"gamma": 0.3}),
]
TEXTS = ["1+2=", "What is 33 + 4 + 18?", "x", "Hello there, 7*6", "abc", "9*9-1=", "Q: why?", "zz top"]


class StopsAt(torch.nn.Module):
    """Predicts letters for answer positions before a per-prompt stop point and EOS from it on.

    The stop point is (last prompt token % 11) + 3 answer tokens; certainty varies by
    position so threshold samplers need several forwards per block.
    """

    def __init__(self, vocab: int, eos: int, prompt_length: int) -> None:
        super().__init__()
        self.vocab, self.eos, self.P = vocab, eos, prompt_length
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the adapter a device and dtype

    def stops(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids[:, self.P - 1] % 11 + 3

    def forward(self, input_ids, attention_mask=None, **_):
        B, N = input_ids.shape
        a = torch.arange(N) - self.P  # answer index of each position
        target = torch.where(a[None] < self.stops(input_ids)[:, None], 40 + a.clamp(min=0) % 20, self.eos)
        strength = 3.0 + 2.5 * (a.clamp(min=0) * 7 % 5).double()
        logits = torch.zeros(B, N, self.vocab)
        logits.scatter_(-1, target[..., None], strength.float()[None, :, None].expand(B, N, 1))
        return type("Out", (), {"logits": logits})()


def _first_eos_prefix(answers: torch.Tensor, eos: int) -> list[list[int]]:
    n = answer_token_counts(answers, [eos])
    return [answers[i, : int(n[i])].tolist() for i in range(answers.shape[0])]


@pytest.mark.parametrize("name,params", SAMPLERS)
def test_stops_and_fills_with_eos(char_tokenizer, name, params):
    eos, P = char_tokenizer.eos_token_id, 4
    module = StopsAt(len(char_tokenizer), eos, P)
    lm = DiffusionLM(module, mask_id=char_tokenizer.mask_token_id, eos_token_ids=[eos])
    ids = torch.tensor([[20, 21, 22, 8 + d] for d in (0, 5, 9, 30)])  # stop points 3+..., varied
    stop = module.stops(ids)
    plain = get_sampler(name, gen_length=32, block_length=8, **params).generate(lm, ids, trace=True)
    early = get_sampler(name, gen_length=32, block_length=8, early_stop=True, **params).generate(lm, ids, trace=True)

    assert _first_eos_prefix(early.answers, eos) == _first_eos_prefix(plain.answers, eos)
    assert answer_token_counts(plain.answers, [eos]).tolist() == stop.tolist()
    assert bool((early.answers[torch.arange(32)[None] >= stop[:, None]] == eos).all())
    for i, s in enumerate(stop.tolist()):
        last_block = s // 8  # the first block that ends in EOS
        used = plain.trace.step[i, : (last_block + 1) * 8].max()
        assert int(early.nfe[i]) == int(used) < int(plain.nfe[i])
        assert bool((early.trace.step[i, (last_block + 1) * 8 :] == 0).all())  # filled, never decoded
    assert int(early.forward_tokens.sum()) < int(plain.forward_tokens.sum())


@pytest.mark.parametrize("name,params", SAMPLERS)
@pytest.mark.parametrize("cache", ["none", "dual"])
def test_text_before_first_eos_unchanged_on_a_transformer(char_tokenizer, name, params, cache):
    """A random built-in model whose EOS logit is boosted, so answers end at varied points."""
    model = make_tiny_llada(char_tokenizer, seed=5)
    eos = char_tokenizer.eos_token_id
    with torch.no_grad():
        model.model.transformer.ff_out.weight[eos].mul_(1.5)
    lm = DiffusionLM(model, mask_id=char_tokenizer.mask_token_id, eos_token_ids=[eos])
    batch = char_tokenizer(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)
    common = dict(gen_length=32, block_length=8, cache=cache, **params)
    plain = get_sampler(name, **common).generate(lm, batch.input_ids, batch.attention_mask)
    early = get_sampler(name, early_stop=True, **common).generate(lm, batch.input_ids, batch.attention_mask)
    assert _first_eos_prefix(early.answers, eos) == _first_eos_prefix(plain.answers, eos)
    assert bool((early.nfe <= plain.nfe).all())
    assert bool((early.nfe < plain.nfe).any())  # early stop really triggered somewhere
    # Batched early stop gives each sample what it gets alone.
    for i in (0, 3):
        ids = char_tokenizer(TEXTS[i], return_tensors="pt", add_special_tokens=False).input_ids
        alone = get_sampler(name, early_stop=True, **common).generate(lm, ids)
        assert torch.equal(alone.answers[0], early.answers[i]) and int(alone.nfe[0]) == int(early.nfe[i])
