"""Small helpers on token ids shared by the CLI, runner and reports."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def answer_token_counts(answers: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """Answer tokens before the first EOS, per row: (B, G) -> (B,). EOS padding is never counted as generated."""
    is_eos = torch.isin(answers, torch.tensor(list(eos_token_ids), device=answers.device))
    first = torch.where(is_eos.any(-1), is_eos.float().argmax(-1), torch.full_like(is_eos[:, 0], answers.shape[-1], dtype=torch.long))
    return first.long()


def decode_answers(tokenizer, answers: torch.Tensor, eos_token_ids: Sequence[int]) -> tuple[list[str], list[int]]:
    """Decode each answer up to its first EOS; returns (texts, answer token counts).

    Tokens after the first EOS are padding or leftovers of parallel decoding and
    are never part of the answer (decoding them too would glue stray digits on).
    """
    answers = answers.cpu()
    counts = answer_token_counts(answers, eos_token_ids).tolist()
    texts = [tokenizer.decode(a[:n].tolist(), skip_special_tokens=True) for a, n in zip(answers, counts)]
    return texts, counts


def leaderboard_token_count(tokenizer, answer: Sequence[int], eos_token_ids: Sequence[int], stop: Sequence[str] = ()) -> int:
    """Generated tokens as the d3LLM AUP leaderboard counts them, for one answer.

    Every answer position that is not an EOS id (wherever it lies, not only before the
    first EOS) and that starts before the first of the ``stop`` strings in the decoded
    text. dpbench's own ``gen_tokens`` counts only the tokens before the first EOS.
    (The reference re-encodes the cut text instead of counting positions, which can add
    a BOS token per answer; dpbench counts only what was generated.)
    """
    eos = set(int(t) for t in eos_token_ids)
    ids = [int(t) for t in answer if int(t) not in eos]
    if not stop or not ids:
        return len(ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stop if s) if i != -1]
    if not cuts:
        return len(ids)
    cut = min(cuts)
    # The largest k whose decoded prefix ends at or before the stop string (prefix length grows with k).
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) <= cut:
            lo = mid
        else:
            hi = mid - 1
    return lo
