"""AUP (Accuracy Under Parallelism), the d3LLM leaderboard's score for a parallel decoder on one task.

For one method on one task take its (tokens per forward, accuracy %) points sorted by
TPF; ``y_1`` is the accuracy of the lowest-TPF point; points more than ``max_drop``
below ``y_1`` are dropped; then::

    AUP = rho_1 * y_1 + sum_{i>=2} (rho_i - rho_{i-1}) * (y_i W(y_i) + y_{i-1} W(y_{i-1})) / 2
    W(y) = min(exp(-alpha * (1 - y / y_max)), 1)

with ``y_max`` the best accuracy of any method on that task (autoregressive baselines
included). A single point gives ``rho * y``. This is the value of d3LLM's ``get_aup``
(hao-ai-lab/d3LLM, ``AUP_leaderboard/aup_utils.py``, tested against it on published
curves), with one deliberate difference: the reference *asserts* when the highest-TPF
point is more than ``max_drop`` below ``y_1``; dpbench drops every such point (wherever
it lies on the curve, as the reference's filter does for the ones it accepts) and
`aup_curve` says which were dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def weight(y: float, y_max: float, alpha: float = 3.0) -> float:
    """The quality weight ``W(y) = min(exp(-alpha (1 - y / y_max)), 1)``."""
    return min(math.exp(-alpha * (1.0 - y / y_max)), 1.0)


@dataclass
class AupCurve:
    value: float
    kept: list[tuple[float, float]]  # (tpf, accuracy %) in TPF order, the points the area is made of
    dropped: list[tuple[float, float]] = field(default_factory=list)  # more than max_drop below y_1
    y_max: float = float("nan")


def aup_curve(tpf, accuracy, y_max: float, *, alpha: float = 3.0, max_drop: float = 5.0) -> AupCurve:
    """`aup` with the points it kept and the ones it dropped."""
    rho, acc = [float(x) for x in tpf], [float(y) for y in accuracy]
    if len(rho) != len(acc):
        raise ValueError(f"tpf and accuracy must have the same length, got {len(rho)} and {len(acc)}")
    if not rho:
        raise ValueError("AUP needs at least one (tpf, accuracy) point, got none")
    bad = [r for r in rho if not (r > 0 and math.isfinite(r))]
    if bad:
        raise ValueError(f"tokens per forward must be positive and finite, got {bad}")
    if not all(math.isfinite(y) for y in acc):
        raise ValueError(f"accuracies must be finite numbers (percent), got {acc}")
    if not (y_max > 0 and math.isfinite(y_max)):
        raise ValueError(f"y_max must be a positive accuracy in percent, got {y_max}")
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    # sorted() is stable: points with equal TPF keep their input order, as in the reference.
    points = sorted(zip(rho, acc), key=lambda p: p[0])
    floor = points[0][1] - max_drop
    kept = [p for p in points if p[1] >= floor]
    dropped = [p for p in points if p[1] < floor]
    value = kept[0][0] * kept[0][1]
    for (r0, y0), (r1, y1) in zip(kept, kept[1:]):
        value += 0.5 * (r1 - r0) * (y1 * weight(y1, y_max, alpha) + y0 * weight(y0, y_max, alpha))
    return AupCurve(value, kept, dropped, float(y_max))


def aup(tpf, accuracy, y_max: float, *, alpha: float = 3.0, max_drop: float = 5.0) -> float:
    """AUP of one method's (tokens per forward, accuracy %) points on one task (see the module doc).

    ``accuracy`` and ``y_max`` are in percent (0-100). Input order does not matter.
    Points more than ``max_drop`` below the accuracy of the lowest-TPF point are
    dropped (the reference asserts instead). Contract: DESIGN.md section 5.
    """
    return aup_curve(tpf, accuracy, y_max, alpha=alpha, max_drop=max_drop).value


__all__ = ["AupCurve", "aup", "aup_curve", "weight"]
