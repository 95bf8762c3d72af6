"""Semi-autoregressive complementary masking for certainty-forcing distillation.

One training example is ``prompt + answer`` where the answer is padded with
EOS to the decoding length. At inference the sampler decodes the answer block
by block: the blocks before the current one are already committed, the current
one is partly masked and everything after it is still masked. `semi_ar_masks`
draws exactly that picture per sample: a random block index k, a Bernoulli mask
inside block k, and all later positions set to ``mask_id``. The complementary
mask (``masked_rev``) covers the other tokens of the same block, so the two
forwards together see every token of the block once as a target.

Unlike the reference implementation, every draw is per sample: the block index,
the segment and the Bernoulli coins of row i depend only on row i's prompt
length and random numbers, so batch size > 1 is correct.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def semi_ar_masks(
    input_ids: torch.Tensor,
    prompt_lengths: torch.Tensor | Sequence[int],
    *,
    mask_id: int,
    block_size: int = 32,
    mask_ratio: float | torch.Tensor = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask one answer block per sample, and its complement (DESIGN.md §3).

    Per sample: k ~ Uniform{0, ..., response_len // block_size}; the segment
    starts at ``prompt_len + k * block_size`` and spans one block, or runs to the
    end of the row when k is the last index. Inside the segment each token is
    masked with probability ``mask_ratio`` (``masked``) and the rest are masked
    in ``masked_rev``. ``mask_ratio`` is one float (the paper) or one ratio per
    sample, shape (B,) (a schedule that also shows the student nearly fully
    masked blocks, as inference starts every block). Everything after the segment is ``mask_id`` in both noisy
    inputs but is in neither loss mask. The prompt is never masked.

    Returns ``(noisy, noisy_rev, masked, masked_rev)``: two (B, L) token tensors
    and two (B, L) bool loss masks. Random numbers come from ``generator``
    (CPU unless it lives on the input's device).
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    B, L = input_ids.shape
    dev = input_ids.device
    ratio = torch.as_tensor(mask_ratio, dtype=torch.float32).to(dev)
    if ratio.dim() > 1 or ratio.numel() not in (1, B):
        raise ValueError(f"mask_ratio must be a float or one value per row ({B}), got shape {tuple(ratio.shape)}")
    if bool((ratio < 0).any()) or bool((ratio > 1).any()):
        raise ValueError(f"mask_ratio must be in [0, 1], got {ratio.tolist()}")
    ratio = ratio.reshape(-1, 1)
    plen = torch.as_tensor(prompt_lengths, dtype=torch.long).reshape(-1).to(dev)
    if plen.numel() != B:
        raise ValueError(f"prompt_lengths must have one entry per row ({B}), got {plen.numel()}")
    if bool((plen < 0).any()) or bool((plen > L).any()):
        raise ValueError(f"prompt_lengths must lie in [0, {L}], got {plen.tolist()}")

    gen_dev = generator.device if generator is not None else torch.device("cpu")
    u_block = torch.rand(B, generator=generator, device=gen_dev).to(dev)
    coins = torch.rand((B, L), generator=generator, device=gen_dev).to(dev) < ratio

    max_k = (L - plen) // block_size  # last block index, inclusive
    k = torch.minimum((u_block * (max_k + 1).to(u_block.dtype)).long(), max_k)
    start = plen + k * block_size
    end = torch.where(k == max_k, torch.full_like(start, L), start + block_size)

    pos = torch.arange(L, device=dev)[None, :]
    in_segment = (pos >= start[:, None]) & (pos < end[:, None])
    after = pos >= end[:, None]
    masked = in_segment & coins
    masked_rev = in_segment & ~coins
    noisy = input_ids.masked_fill(masked | after, mask_id)
    noisy_rev = input_ids.masked_fill(masked_rev | after, mask_id)
    return noisy, noisy_rev, masked, masked_rev
