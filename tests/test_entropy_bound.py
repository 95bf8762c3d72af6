"""`entropy_bound` against diffusers' EntropyBoundScheduler and a plain reference loop;
`confidence` against diffusers' BlockRefinementScheduler, on hand-built logits."""

from __future__ import annotations

import pytest
import torch
from diffusers import BlockRefinementScheduler, EntropyBoundScheduler

from dpbench.samplers import available, get_sampler
from dpbench.samplers.base import StepInputs

V = 12
MASK = V  # outside the vocabulary, so no logit is excluded and x0 is the plain argmax


def hand_logits(seed: int, rows: int, length: int) -> torch.Tensor:
    """Rows mixing sharp and flat distributions, so entropies spread over (0, log V)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(rows, length, 1, generator=g, dtype=torch.float64) * 4 + 0.2
    return torch.randn(rows, length, V, generator=g, dtype=torch.float64) * scale


def entropies(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, -1)
    return -(p * torch.log(p + 1e-12)).sum(-1)


def select(name: str, logits: torch.Tensor, is_mask: torch.Tensor, **params) -> torch.Tensor:
    smp = get_sampler(name, gen_length=logits.shape[1], block_length=logits.shape[1], **params)
    s = StepInputs(logits, is_mask, torch.zeros(logits.shape[0], dtype=torch.long), MASK, 0.0, None)
    return smp.select(s) & is_mask


def diffusers_eb(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    # t_max = t_min = 1: no temperature scaling, so both rank the same distributions.
    sch = EntropyBoundScheduler(entropy_bound=gamma, t_max=1.0, t_min=1.0, num_inference_steps=8)
    sample = torch.zeros(logits.shape[:2], dtype=torch.long)
    return sch.step(logits.float(), 0, sample, generator=torch.Generator().manual_seed(0)).accepted_index


def test_registered():
    assert "entropy_bound" in available()
    assert type(get_sampler("eb")).name == "entropy_bound"
    with pytest.raises(ValueError, match=r"gamma .* must be >= 0, got -1"):
        get_sampler("entropy_bound", gamma=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_prefix_length_matches_diffusers(seed):
    """For each k, a gamma between the k-th and (k+1)-th partial sums must commit exactly k tokens."""
    logits = hand_logits(seed, 1, 8)
    h = entropies(logits)[0].sort().values
    partial = torch.cat([torch.zeros(1, dtype=torch.float64), h.cumsum(0)])  # sum of all before the k-th
    for k in range(1, 9):
        lo, hi = partial[k - 1], partial[k] if k < 8 else partial[8] + 1
        assert hi - lo > 1e-4  # away from the boundary, so float32 vs float64 cannot matter
        gamma = float(lo + hi) / 2
        got = select("entropy_bound", logits, torch.ones(1, 8, dtype=torch.bool), gamma=gamma)
        assert int(got.sum()) == k, (k, gamma)
        assert torch.equal(got, diffusers_eb(logits, gamma)), (k, gamma)
        if k < 8:  # the committed ones are the k lowest-entropy positions
            assert bool(entropies(logits)[0][got[0]].max() < entropies(logits)[0][~got[0]].min())


@pytest.mark.parametrize("gamma", [0.0, 0.05, 0.4, 1.5, 6.0])
def test_batch_matches_diffusers(gamma):
    logits = hand_logits(7, 6, 16)
    h = entropies(logits).sort(-1).values
    lhs = (h.cumsum(-1) - h)[:, 1:]  # the first token's is 0: always committed
    assert bool(((lhs - gamma).abs() > 1e-5).all())  # no row sits on the boundary
    got = select("entropy_bound", logits, torch.ones(6, 16, dtype=torch.bool), gamma=gamma)
    assert torch.equal(got, diffusers_eb(logits, gamma))
    assert bool((got.sum(-1) >= 1).all())


def test_only_masked_positions_compete():
    """diffusers ranks every position (uniform noise); restricted to the masked ones, the rule is the same."""
    logits = hand_logits(3, 1, 10)
    is_mask = torch.tensor([[1, 0, 1, 1, 0, 1, 1, 0, 1, 1]], dtype=torch.bool)
    idx = is_mask[0].nonzero().squeeze(1)
    for gamma in (0.0, 0.3, 1.0, 4.0):
        got = select("entropy_bound", logits, is_mask, gamma=gamma)
        want = torch.zeros_like(is_mask)
        want[0, idx] = diffusers_eb(logits[:, idx], gamma)[0]
        assert torch.equal(got, want), gamma


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9, 0.99])
def test_confidence_matches_block_refinement(threshold):
    """Fast-dLLM thresholding = BlockRefinementScheduler with a one-token-per-step quota and no editing."""
    logits = hand_logits(11, 6, 8)
    g = torch.Generator().manual_seed(5)
    is_mask = torch.rand(6, 8, generator=g) < 0.7
    is_mask[:, 0] = True  # every row has something to commit
    conf = torch.softmax(logits, -1).amax(-1)
    assert bool(((conf - threshold).abs() > 1e-5).all())  # '>=' here vs '>' there cannot matter
    got = select("confidence", logits, is_mask, threshold=threshold)

    sch = BlockRefinementScheduler(block_length=8, num_inference_steps=8, threshold=threshold, minimal_topk=1)
    sch.set_timesteps(8, block_length=8)
    sample = torch.where(is_mask, MASK, 3)
    out = sch.step(logits.float(), 0, sample, mask_token_id=MASK, temperature=0.0, threshold=threshold)
    assert torch.equal(got, out.transfer_index)
    assert not bool(out.editing_transfer_index.any())


def reference_eb(lm, prompt, gen_length, block_length, gamma):
    """Batch 1, greedy, one position at a time."""
    mask, P = lm.mask_id, prompt.shape[1]
    x = torch.cat([prompt, torch.full((1, gen_length), mask)], dim=1)
    nfe = 0
    for b in range(gen_length // block_length):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        while bool((x[0, lo:hi] == mask).any()):
            logits = lm.logits(x)[0]
            nfe += 1
            probs = torch.softmax(logits.double(), -1)
            no_mask = logits.clone()
            no_mask[:, mask] = float("-inf")
            x0 = no_mask.argmax(-1)
            cand = sorted(
                (float(-(probs[p] * torch.log(probs[p] + 1e-12)).sum()), p) for p in range(lo, hi) if x[0, p] == mask
            )
            total, chosen = 0.0, []
            for h, p in cand:
                if chosen and total > gamma:  # total = sum of the entropies before this one
                    break
                chosen.append(p)
                total += h
            for p in chosen:
                x[0, p] = x0[p]
    return x[0, P:], nfe


@torch.no_grad()
@pytest.mark.parametrize("gamma", [0.0, 0.2, 1.0])
def test_generate_matches_reference_loop(char_tokenizer, tiny_lm, gamma):
    smp = get_sampler("entropy_bound", gen_length=16, block_length=8, gamma=gamma)
    nfes = []
    for text in ["1+2=", "What is 33 + 4?"]:
        ids = char_tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        want, want_nfe = reference_eb(tiny_lm, ids, 16, 8, gamma)
        out = smp.generate(tiny_lm, ids)
        assert torch.equal(out.answers[0], want) and int(out.nfe[0]) == want_nfe
        nfes.append(want_nfe)
    if gamma == 1.0:
        assert any(n < 16 for n in nfes)  # the bound really admits several tokens per step


def test_huge_bound_decodes_each_block_in_one_forward(char_tokenizer, tiny_lm):
    ids = char_tokenizer("What is 3 + 4?", return_tensors="pt", add_special_tokens=False).input_ids
    out = get_sampler("entropy_bound", gen_length=32, block_length=8, gamma=1e6).generate(tiny_lm, ids)
    assert int(out.nfe[0]) == 4 and not bool((out.answers == tiny_lm.mask_id).any())
