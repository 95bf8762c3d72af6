"""Contracts of DESIGN.md §3: `semi_ar_masks` properties and `certainty_forcing_loss` against a plain formula."""

from __future__ import annotations

import math

import pytest
import torch

from dpbench.distill import certainty_forcing_loss, certainty_forcing_terms, semi_ar_masks

MASK = 99


def draw(input_ids, plen, seed, **kw):
    return semi_ar_masks(input_ids, plen, mask_id=MASK, generator=torch.Generator().manual_seed(seed), **kw)


def segment_of(masked_row, masked_rev_row):
    """(start, end) of the union of both masks in one row (None if empty)."""
    idx = (masked_row | masked_rev_row).nonzero().flatten()
    return (int(idx[0]), int(idx[-1]) + 1) if idx.numel() else None


@pytest.mark.parametrize("block", [4, 5])
def test_masks_structure_per_row(block):
    B, L = 6, 30
    ids = torch.randint(0, 50, (B, L))
    plen = torch.tensor([0, 3, 7, 10, 12, 29])
    for seed in range(40):
        noisy, noisy_rev, m, mr = draw(ids, plen, seed, block_size=block)
        assert not bool((m & mr).any())
        for i in range(B):
            P = int(plen[i])
            pos = torch.arange(L)
            # The prompt is never masked, in either input or either loss mask.
            assert torch.equal(noisy[i, :P], ids[i, :P]) and torch.equal(noisy_rev[i, :P], ids[i, :P])
            assert not bool(m[i, :P].any() or mr[i, :P].any())
            seg = segment_of(m[i], mr[i])
            if seg is None:  # k was the last index and the response is a whole number of blocks
                assert (L - P) % block == 0
                start = end = L
            else:
                start, end = seg
                assert (start - P) % block == 0  # aligned to this row's own prompt
                k, max_k = (start - P) // block, (L - P) // block
                assert end == (L if k == max_k else start + block)
            inside = (pos >= start) & (pos < end)
            # Complements inside the segment, nothing outside it carries loss.
            assert torch.equal(m[i] | mr[i], inside)
            # Inside: masked tokens are mask_id, the rest are the original tokens (per input).
            assert torch.equal(noisy[i][inside], torch.where(m[i], MASK, ids[i])[inside])
            assert torch.equal(noisy_rev[i][inside], torch.where(mr[i], MASK, ids[i])[inside])
            # After the segment: mask_id in both inputs, no loss; before it: untouched.
            after = pos >= end
            assert bool((noisy[i][after] == MASK).all() and (noisy_rev[i][after] == MASK).all())
            before = (pos >= P) & (pos < start)
            assert torch.equal(noisy[i][before], ids[i][before]) and torch.equal(noisy_rev[i][before], ids[i][before])


def test_block_index_covers_zero_to_max_and_last_runs_to_end():
    L, P, block = 2 + 70, 2, 16  # response 70 = 4 blocks + 6 tokens: k in 0..4, k=4 spans the 6 tail tokens
    ids = torch.randint(0, 50, (1, L))
    seen = {}
    for seed in range(300):
        _, _, m, mr = draw(ids, [P], seed, block_size=block)
        start, end = segment_of(m[0], mr[0])
        seen[(start - P) // block] = end - start
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert seen[4] == 6 and all(seen[k] == block for k in range(4))


def test_per_sample_independence_at_batch_size_gt_1():
    # Identical rows must still get their own block index and their own coins.
    B, L, P = 8, 40, 8
    ids = torch.randint(0, 50, (1, L)).expand(B, L).clone()
    _, _, m, mr = draw(ids, [P] * B, 0, block_size=8)
    starts = {segment_of(m[i], mr[i]) for i in range(B)}
    assert len(starts) > 1
    assert len({tuple(m[i].tolist()) for i in range(B)}) > 1
    # A row's draw does not depend on what else is in the batch: row 0 alone vs in a batch
    # uses different random numbers, but both obey the row's own prompt length.
    _, _, m2, mr2 = draw(torch.cat([ids[:1], ids[:1, :]]), torch.tensor([P, 0]), 3, block_size=8)
    for i, p in enumerate([P, 0]):
        seg = segment_of(m2[i], mr2[i])
        assert seg is None or (seg[0] - p) % 8 == 0


def test_mask_ratio_and_reproducibility():
    ids = torch.randint(0, 50, (64, 132))
    _, _, m, mr = draw(ids, [4] * 64, 1, block_size=32, mask_ratio=0.5)
    frac = m.sum() / (m | mr).sum()
    assert 0.4 < float(frac) < 0.6
    again = draw(ids, [4] * 64, 1, block_size=32, mask_ratio=0.5)
    assert torch.equal(again[2], m) and torch.equal(again[3], mr)
    _, _, m1, mr1 = draw(ids, [4] * 64, 2, block_size=32, mask_ratio=1.0)
    assert not bool(mr1.any()) and bool(m1.any())


def test_per_sample_mask_ratio():
    """A (B,) ratio applies row by row: 1.0 masks the whole segment, 0.0 leaves it to masked_rev."""
    ids = torch.randint(0, 50, (3, 40))
    ratio = torch.tensor([1.0, 0.0, 0.5])
    _, _, m, mr = draw(ids, [4, 4, 4], 3, block_size=8, mask_ratio=ratio)
    assert bool(m[0].any()) and not bool(mr[0].any())
    assert bool(mr[1].any()) and not bool(m[1].any())
    with pytest.raises(ValueError, match=r"mask_ratio must be a float or one value per row \(3\), got shape \(2,\)"):
        semi_ar_masks(ids, [4, 4, 4], mask_id=MASK, mask_ratio=torch.tensor([0.5, 0.5]))


def test_mask_ratio_range_config():
    from dpbench.distill import DistillConfig

    cfg = DistillConfig.from_dict({"train": {"mask_ratio_range": ["0.1", 1]}})
    assert cfg.train.mask_ratio_range == [0.1, 1.0]
    assert DistillConfig.from_dict({}).train.mask_ratio_range is None  # the paper's fixed ratio
    with pytest.raises(ValueError, match=r"train.mask_ratio_range must be \[lo, hi\] with 0 <= lo < hi <= 1, or null, got \[0.6, 0.2\]"):
        DistillConfig.from_dict({"train": {"mask_ratio_range": [0.6, 0.2]}})


def test_masks_validate_arguments():
    ids = torch.zeros((2, 10), dtype=torch.long)
    with pytest.raises(ValueError, match="prompt_lengths"):
        semi_ar_masks(ids, [3], mask_id=MASK)
    with pytest.raises(ValueError, match="mask_ratio"):
        semi_ar_masks(ids, [3, 3], mask_id=MASK, mask_ratio=1.5)
    with pytest.raises(ValueError, match="prompt_lengths"):
        semi_ar_masks(ids, [3, 11], mask_id=MASK)


# ---------------------------------------------------------------- loss


def plain_loss(logits, logits_rev, labels, masked, masked_rev, T, w):
    """The formula of DESIGN.md §3 with Python loops over positions."""

    def ce_and_h(lg, msk):
        ces, hs = [], []
        for b in range(lg.shape[0]):
            for i in range(lg.shape[1]):
                if not msk[b, i]:
                    continue
                row = [float(v) for v in lg[b, i]]
                y = int(labels[b, i])
                lse = math.log(sum(math.exp(v) for v in row))
                ces.append(lse - row[y])
                if max(range(len(row)), key=lambda j: row[j]) == y:
                    z = [v / T for v in row]
                    zl = math.log(sum(math.exp(v) for v in z))
                    p = [math.exp(v - zl) for v in z]
                    hs.append(-sum(pi * math.log(pi) for pi in p))
        ce = sum(ces) / len(ces) if ces else 0.0
        h = sum(hs) / len(hs) if hs else 0.0
        return ce, h

    ce1, h1 = ce_and_h(logits, masked)
    ce2, h2 = ce_and_h(logits_rev, masked_rev)
    return ce1 + ce2 + w * (h1 + h2), ce1 + ce2, h1 + h2


def hand_built():
    torch.manual_seed(0)
    B, L, V = 2, 5, 6
    logits = torch.randn(B, L, V) * 2
    logits_rev = torch.randn(B, L, V) * 2
    labels = torch.randint(0, V, (B, L))
    # Make some masked positions correct (argmax == label) and leave others wrong.
    logits[0, 1, labels[0, 1]] += 10
    logits[1, 3, labels[1, 3]] += 10
    logits_rev[0, 2, labels[0, 2]] += 10
    masked = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 0, 1, 1]], dtype=torch.bool)
    masked_rev = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 0, 0]], dtype=torch.bool)
    return logits, logits_rev, labels, masked, masked_rev


@pytest.mark.parametrize("T,w", [(0.5, 2.0), (1.0, 0.0), (0.3, 1.5)])
def test_loss_equals_plain_formula(T, w):
    args = hand_built()
    got = certainty_forcing_loss(*args, temperature=T, entropy_weight=w)
    want, ce, h = plain_loss(*args, T, w)
    assert float(got) == pytest.approx(want, rel=1e-5, abs=1e-6)
    terms = certainty_forcing_terms(*args, temperature=T, entropy_weight=w)
    assert float(terms.ce) == pytest.approx(ce, rel=1e-5) and float(terms.entropy) == pytest.approx(h, rel=1e-5, abs=1e-7)
    assert terms.n_masked == int(args[3].sum() + args[4].sum())


def test_entropy_counts_only_correct_masked_positions():
    logits, logits_rev, labels, masked, masked_rev = hand_built()
    base = certainty_forcing_terms(logits, logits_rev, labels, masked, masked_rev)
    # A wrong masked position: reshaping its distribution (argmax stays wrong) changes CE, not H.
    b, i = 1, 0
    assert masked[b, i] and int(logits[b, i].argmax()) != int(labels[b, i])
    wrong = logits.clone()
    top = int(wrong[b, i].argmax())
    wrong[b, i] = wrong[b, i] * 0.1
    wrong[b, i, top] += 20
    assert int(wrong[b, i].argmax()) != int(labels[b, i])
    t2 = certainty_forcing_terms(wrong, logits_rev, labels, masked, masked_rev)
    assert float(t2.entropy) == pytest.approx(float(base.entropy), rel=1e-6)
    assert float(t2.ce) != pytest.approx(float(base.ce), rel=1e-3)
    # An unmasked position that is correct counts for nothing.
    unmasked = logits.clone()
    unmasked[0, 0] = torch.randn(6)
    t3 = certainty_forcing_terms(unmasked, logits_rev, labels, masked, masked_rev)
    assert float(t3.loss) == pytest.approx(float(base.loss), rel=1e-6)
    # No correct masked position in either pass: the entropy part is exactly 0.
    flat = torch.zeros_like(logits)
    flat[..., 0] = 1.0
    lab = torch.ones_like(labels)
    t4 = certainty_forcing_terms(flat, flat.clone(), lab, masked, masked_rev)
    assert float(t4.entropy) == 0.0 and t4.n_correct == 0
    assert float(t4.loss) == pytest.approx(float(t4.ce))


def test_loss_gradients_and_empty_masks():
    logits, logits_rev, labels, masked, masked_rev = hand_built()
    logits.requires_grad_(True)
    loss = certainty_forcing_loss(logits, logits_rev, labels, masked, masked_rev)
    loss.backward()
    assert logits.grad is not None and bool(logits.grad[masked].abs().sum() > 0)
    assert float(logits.grad[~masked].abs().sum()) == 0.0
    none = torch.zeros_like(masked)
    zero = certainty_forcing_loss(logits, logits_rev, labels, none, none)
    assert float(zero.detach()) == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="temperature"):
        certainty_forcing_loss(logits, logits_rev, labels, masked, masked_rev, temperature=0)
