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
