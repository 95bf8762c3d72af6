"""Samplers against plainly written, one-token-at-a-time reference loops (DESIGN.md §3)."""

from __future__ import annotations

import math

import pytest
import torch

from dpbench.samplers import get_sampler


def reference_generate(lm, prompt, kind, gen_length, block_length, steps=None, threshold=None):
    """Batch 1, temperature 0, written for clarity, not speed."""
    mask = lm.mask_id
    P = prompt.shape[1]
    x = torch.cat([prompt, torch.full((1, gen_length), mask)], dim=1)
    nfe = 0
    n_blocks = gen_length // block_length

    def predict():
        nonlocal nfe
        logits = lm.logits(x)[0]
        nfe += 1
        no_mask = logits.clone()
        no_mask[:, mask] = float("-inf")
        x0 = no_mask.argmax(-1)
        probs = torch.softmax(logits.double(), -1)
        return x0, probs

    torch.set_grad_enabled(False)
    for b in range(n_blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        if kind == "baseline":
            spb = steps // n_blocks
            m = int((x[0, lo:hi] == mask).sum())
            quota = [m // spb + (1 if i < m % spb else 0) for i in range(spb)]
            for i in range(spb):
                x0, probs = predict()
                conf = torch.full((x.shape[1],), float("-inf"), dtype=torch.float64)
                for pos in range(lo, hi):
                    if x[0, pos] == mask:
                        conf[pos] = probs[pos, x0[pos]]
                if quota[i] > 0:
                    idx = torch.topk(conf, quota[i]).indices
                    x[0, idx] = x0[idx]
        else:
            while bool((x[0, lo:hi] == mask).any()):
                x0, probs = predict()
                chosen, best, best_score = [], None, None
                for pos in range(lo, hi):
                    if x[0, pos] != mask:
                        continue
                    p = probs[pos]
                    if kind == "dparallel":
                        score = -float(-(p * torch.log(p + 1e-12)).sum())  # higher is more certain
                        ok = -score <= threshold
                    else:
                        score = float(p[x0[pos]])
                        ok = score >= threshold
                    if ok:
                        chosen.append(pos)
                    if best_score is None or score > best_score:
                        best, best_score = pos, score
                for pos in set(chosen) | {best}:
                    x[0, pos] = x0[pos]
    torch.set_grad_enabled(True)
    return x[0, P:], nfe


SETTINGS = [
    ("baseline", dict(gen_length=16, block_length=4, steps=16)),
    ("baseline", dict(gen_length=16, block_length=8, steps=6)),
    ("baseline", dict(gen_length=24, block_length=8, steps=9)),
    ("dparallel", dict(gen_length=16, block_length=8, threshold=0.5)),
    ("dparallel", dict(gen_length=24, block_length=8, threshold=0.8)),
    ("confidence", dict(gen_length=16, block_length=8, threshold=0.9)),
    ("confidence", dict(gen_length=24, block_length=4, threshold=0.8)),
]
PROMPTS = ["1+2=", "What is 33 + 4?", "x"]


def _prompt(tok, text):
    return tok(text, return_tensors="pt", add_special_tokens=False).input_ids


@pytest.mark.parametrize("lm_name", ["tiny_lm", "bert_lm"])
@pytest.mark.parametrize("name,params", SETTINGS)
def test_matches_reference_loop(request, char_tokenizer, lm_name, name, params):
    lm = request.getfixturevalue(lm_name)
    ref_params = {k: v for k, v in params.items() if k in ("steps", "threshold")}
    smp = get_sampler(name, **params)
    for text in PROMPTS:
        ids = _prompt(char_tokenizer, text)
        want_tokens, want_nfe = reference_generate(
            lm, ids, name, params["gen_length"], params["block_length"], **ref_params
        )
        out = smp.generate(lm, ids)
        assert torch.equal(out.answers[0], want_tokens), (name, params, text)
        assert int(out.nfe[0]) == want_nfe


def test_thresholds_actually_bite(char_tokenizer, tiny_lm):
    """The sharpened random model must make thresholds matter, or the exactness tests prove little."""
    for name, thr in [("dparallel", 0.8), ("confidence", 0.8)]:
        nfes = {
            int(get_sampler(name, gen_length=24, block_length=8, threshold=thr).generate(tiny_lm, _prompt(char_tokenizer, t)).nfe)
            for t in PROMPTS
        }
        assert any(3 < n < 24 for n in nfes), (name, nfes)


@pytest.mark.parametrize("lm_name", ["tiny_lm", "bert_lm"])
@pytest.mark.parametrize("name,params", SETTINGS[1:2] + SETTINGS[4:5] + SETTINGS[6:7])
def test_batch_equals_alone(request, char_tokenizer, lm_name, name, params):
    lm = request.getfixturevalue(lm_name)
    texts = ["1+2=", "What is 33 + 4 + 18?", "x", "Hello there, 7*6"]
    batch = char_tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert batch.input_ids.shape[1] > len(texts[0])  # really left-padded
    smp = get_sampler(name, **params)
    out = smp.generate(lm, batch.input_ids, batch.attention_mask)
    for i, text in enumerate(texts):
        alone = smp.generate(lm, _prompt(char_tokenizer, text))
        assert torch.equal(out.answers[i], alone.answers[0]), (i, text)
        assert int(out.nfe[i]) == int(alone.nfe[0])


def test_nfe_bounds(char_tokenizer, tiny_lm):
    ids = _prompt(char_tokenizer, "What is 33 + 4?")
    assert int(get_sampler("baseline", gen_length=32, block_length=8, steps=32).generate(tiny_lm, ids).nfe) == 32
    for name, thr in [("dparallel", 0.5), ("confidence", 0.9)]:
        n = int(get_sampler(name, gen_length=32, block_length=8, threshold=thr).generate(tiny_lm, ids).nfe)
        assert 4 <= n <= 32
    # A threshold that admits everything decodes each block in one forward.
    admit_all = [("dparallel", math.log(len(char_tokenizer)) + 1), ("confidence", 0.0)]
    for name, thr in admit_all:
        out = get_sampler(name, gen_length=32, block_length=8, threshold=thr).generate(tiny_lm, ids)
        assert int(out.nfe) == 4
        assert not bool((out.answers == tiny_lm.mask_id).any())


@pytest.mark.parametrize("name,params", SETTINGS)
def test_never_commits_after_current_block(char_tokenizer, tiny_lm, name, params):
    texts = ["1+2=", "What is 33 + 4 + 18?"]
    batch = char_tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = get_sampler(name, **params).generate(tiny_lm, batch.input_ids, batch.attention_mask, trace=True)
    L, nb = params["block_length"], params["gen_length"] // params["block_length"]
    steps = out.trace.step.view(len(texts), nb, L)
    assert bool((steps >= 1).all())  # every position committed by some forward
    # Every position of block b is committed strictly before any position of block b+1.
    assert bool((steps[:, :-1].amax(-1) < steps[:, 1:].amin(-1)).all())
    assert torch.equal(steps.amax((1, 2)), out.nfe)
    assert bool((out.trace.confidence > 0).all()) and bool((out.trace.entropy >= 0).all())


def test_temperature_is_reproducible_with_a_generator(char_tokenizer, tiny_lm):
    ids = _prompt(char_tokenizer, "1+2=")
    smp = get_sampler("dparallel", gen_length=16, block_length=8, temperature=1.0)
    a = smp.generate(tiny_lm, ids, generator=torch.Generator().manual_seed(3))
    b = smp.generate(tiny_lm, ids, generator=torch.Generator().manual_seed(3))
    greedy = get_sampler("dparallel", gen_length=16, block_length=8).generate(tiny_lm, ids)
    assert torch.equal(a.sequences, b.sequences)
    assert not bool((a.answers == tiny_lm.mask_id).any())
    different = [
        not torch.equal(smp.generate(tiny_lm, ids, generator=torch.Generator().manual_seed(s)).answers, greedy.answers)
        for s in range(4)
    ]
    assert any(different)


def test_mask_token_is_never_committed(char_tokenizer):
    """A model that prefers [MASK] everywhere would loop forever in the reference code."""
    from dpbench.models import DiffusionLM

    class LovesMask(torch.nn.Module):
        def __init__(self, vocab, mask_id):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.vocab, self.mask_id = vocab, mask_id

        def forward(self, input_ids, attention_mask=None, **_):
            logits = torch.zeros(*input_ids.shape, self.vocab)
            logits[..., self.mask_id] = 50.0
            logits[..., 10] = 5.0

            class Out:
                pass

            out = Out()
            out.logits = logits
            return out

    mid = char_tokenizer.mask_token_id
    lm = DiffusionLM(LovesMask(len(char_tokenizer), mid), mask_id=mid, eos_token_ids=[1])
    for name in ("baseline", "dparallel", "confidence"):
        params = {"steps": 8} if name == "baseline" else {}
        out = get_sampler(name, gen_length=8, block_length=4, **params).generate(lm, torch.tensor([[5, 6]]))
        assert bool((out.answers == 10).all()), name


@pytest.mark.parametrize(
    "name,params",
    [
        ("baseline", {"steps": 24}),  # 6 steps per block of 16: k = 3, 3, 3, 3, 2, 2
        ("baseline", {"steps": 24, "remasking": "random"}),
        ("dparallel", {"threshold": 0.0}),
        ("dparallel", {"threshold": 1e6}),  # everything passes the threshold
        ("confidence", {"threshold": 0.0}),
        ("confidence", {"threshold": 1.0}),
        ("entropy_bound", {"gamma": 0.0}),
        ("entropy_bound", {"gamma": 1e6}),  # everything within the bound
    ],
)
def test_samplers_that_skip_the_mask_intersection_select_masked_positions_only(name, params):
    """`selects_masked_only` lets the loop skip `select(s) & is_mask`: it must hold for any logits,
    ties included (all-equal logits, and saturated ones where several confidences are exactly 1)."""
    from dpbench.samplers.base import StepInputs

    smp = get_sampler(name, gen_length=64, block_length=16, **params)
    assert type(smp).selects_masked_only
    g = torch.Generator().manual_seed(0)
    ks = [3, 3, 3, 3, 2, 2]
    for trial in range(60):
        step = trial % 6
        left = 16 - sum(ks[:step])  # the masks the fixed-step schedule leaves at this step
        is_mask = torch.zeros(3, 16, dtype=torch.bool)
        for row in is_mask:
            row[torch.randperm(16, generator=g)[:left]] = True
        logits = torch.randn(3, 16, 9, generator=g) * [0.0, 1.0, 100.0][trial % 3]
        s = StepInputs(logits, is_mask, torch.full((3,), step), 0, 0.0, g)
        commit = smp.select(s)
        assert commit.any(1).all() and not (commit & ~is_mask).any(), (trial, commit, is_mask)
    # A broken model's nan logits: never a committed position (the loop then reports no progress).
    logits[0, is_mask[0]] = float("nan")
    commit = smp.select(StepInputs(logits, is_mask, torch.full((3,), 5), 0, 0.0, g))
    assert not (commit & ~is_mask).any()


def test_top_k_per_row_with_an_int_k_equals_a_per_row_k():
    score = torch.tensor([[0.5, 0.9, 0.9, 0.1], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    from dpbench.samplers.base import top_k_per_row

    for k in range(5):
        picked = top_k_per_row(score, k)
        assert torch.equal(picked, top_k_per_row(score, torch.full((2,), k)))
        assert picked.sum(1).tolist() == [k, k]
    assert top_k_per_row(score, 2).tolist() == [[False, True, True, False], [True, True, False, False]]  # ties: earlier first


def test_a_sampler_that_commits_nothing_raises_instead_of_looping_forever(tiny_lm):
    from dpbench.samplers.base import BlockSampler

    class Lazy(BlockSampler):
        def select(self, s):
            return torch.zeros_like(s.is_mask)

    with pytest.raises(RuntimeError, match=r"'Lazy' committed nothing in some step: a block of 4 still has masks after 4 steps"):
        Lazy(gen_length=8, block_length=4).generate(tiny_lm, torch.tensor([[5, 6], [7, 8]]))


def test_the_custom_sampler_example_in_the_docs_runs(monkeypatch, char_tokenizer, tiny_lm):
    import re
    from pathlib import Path

    from dpbench.samplers import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # keep "top-two" out of other tests
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    doc = (Path(__file__).parents[1] / "docs" / "samplers.md").read_text()
    code = re.search(r"## Writing a decoder.*?```python\n(.*?)```", doc, re.S).group(1)
    exec(compile(code, "docs/samplers.md", "exec"), {})
    ids = char_tokenizer(["1+2=", "What is 3+4?"], return_tensors="pt", padding=True, add_special_tokens=False)
    out = get_sampler("top-two", gen_length=16, block_length=8, margin=0.5).generate(tiny_lm, ids.input_ids, ids.attention_mask)
    assert not (out.answers == tiny_lm.mask_id).any() and bool((out.nfe <= 16).all()) and bool((out.nfe >= 2).all())
