"""The certainty-forcing objective (dParallel, arXiv 2509.26488).

Cross-entropy on the masked tokens keeps the student on the teacher's
trajectories; the entropy term, applied only where the student already predicts
the right token, pushes those predictions to become *confident* early, so a
threshold sampler can commit many of them in one step. Entropy is measured on
``softmax(logits / temperature)``: a temperature below 1 sharpens the
distribution, so the penalty keeps pulling until the model is very certain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class CertaintyForcingTerms:
    """The loss and its parts (all scalars; ``loss`` carries the gradient)."""

    loss: torch.Tensor
    ce: torch.Tensor  # CE(masked) + CE(masked_rev)
    entropy: torch.Tensor  # H(masked) + H(masked_rev), before the weight
    n_masked: int  # masked positions in both passes
    n_correct: int  # of those, where argmax == label (the entropy term's support)

    def as_floats(self) -> dict[str, float]:
        return {
            "loss": float(self.loss.detach()),
            "ce": float(self.ce.detach()),
            "entropy": float(self.entropy.detach()),
            "n_masked": self.n_masked,
            "n_correct": self.n_correct,
        }


def _masked_terms(
    logits: torch.Tensor, labels: torch.Tensor, masked: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(mean CE over masked, mean tempered entropy over correct masked, counts)."""
    sel = logits[masked].float()  # (N, V): gather first, so the softmax is over N rows, not B*L
    target = labels[masked]
    zero = logits.sum() * 0.0  # keeps every parameter in the graph (DDP) when a term is empty
    if sel.shape[0] == 0:
        return zero, zero, 0, 0
    ce = F.cross_entropy(sel, target)
    correct = sel.argmax(-1) == target
    n_correct = int(correct.sum())
    if n_correct == 0:
        return ce, zero, sel.shape[0], 0
    logp = F.log_softmax(sel[correct] / temperature, dim=-1)
    h = -(logp.exp() * logp).sum(-1).mean()
    return ce, h, sel.shape[0], n_correct


def certainty_forcing_terms(
    logits: torch.Tensor,
    logits_rev: torch.Tensor,
    labels: torch.Tensor,
    masked: torch.Tensor,
    masked_rev: torch.Tensor,
    *,
    temperature: float = 0.5,
    entropy_weight: float = 2.0,
) -> CertaintyForcingTerms:
    """`certainty_forcing_loss` with its CE and entropy parts kept apart for logging."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if entropy_weight < 0:
        raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight}")
    for name, t in (("logits_rev", logits_rev), ("masked", masked), ("masked_rev", masked_rev)):
        want = logits.shape if name == "logits_rev" else logits.shape[:2]
        if t.shape != want:
            raise ValueError(f"{name} must have shape {tuple(want)}, got {tuple(t.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:2])}, got {tuple(labels.shape)}")
    ce_a, h_a, n_a, c_a = _masked_terms(logits, labels, masked.bool(), temperature)
    ce_b, h_b, n_b, c_b = _masked_terms(logits_rev, labels, masked_rev.bool(), temperature)
    ce, ent = ce_a + ce_b, h_a + h_b
    return CertaintyForcingTerms(ce + entropy_weight * ent, ce, ent, n_a + n_b, c_a + c_b)


def certainty_forcing_loss(
    logits: torch.Tensor,
    logits_rev: torch.Tensor,
    labels: torch.Tensor,
    masked: torch.Tensor,
    masked_rev: torch.Tensor,
    *,
    temperature: float = 0.5,
    entropy_weight: float = 2.0,
) -> torch.Tensor:
    """``CE(masked) + CE(masked_rev) + entropy_weight * (H(masked) + H(masked_rev))`` (DESIGN.md §3).

    CE is the mean token cross-entropy over the masked positions of that pass;
    H is the mean entropy of ``softmax(logits / temperature)`` over the masked
    positions whose argmax equals the label (0 when there are none).
    """
    return certainty_forcing_terms(
        logits, logits_rev, labels, masked, masked_rev, temperature=temperature, entropy_weight=entropy_weight
    ).loss
