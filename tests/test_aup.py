"""AUP (DESIGN.md section 5): hand-computed cases, published curves against d3LLM's get_aup, report tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dpbench.data import leaderboard_points
from dpbench.report import aup, aup_curve
from dpbench.report.scoreboard import aup_table, leaderboard_table, y_max_for


def W(y: float, y_max: float) -> float:
    return min(math.exp(-3.0 * (1 - y / y_max)), 1.0)


def test_one_point_is_its_rectangle():
    assert aup([2.0], [80.0], 90.0) == pytest.approx(160.0)
    assert aup([1.0], [72.55], 74.98) == pytest.approx(72.55)  # the leaderboard's single slow point


def test_unsorted_input_is_sorted_by_tpf():
    # Sorted: (1, 80), (2, 79), (3, 78); y_max 80. By hand: 80 + (79 W79 + 80) / 2 + (78 W78 + 79 W79) / 2.
    by_hand = 80 + 0.5 * (79 * math.exp(-3 / 80) + 80) + 0.5 * (78 * math.exp(-6 / 80) + 79 * math.exp(-3 / 80))
    assert by_hand == pytest.approx(232.2743549667585)
    assert aup([3.0, 1.0, 2.0], [78.0, 80.0, 79.0], 80.0) == pytest.approx(by_hand)
    assert aup([1.0, 2.0, 3.0], [80.0, 79.0, 78.0], 80.0) == pytest.approx(by_hand)


def test_a_point_exactly_max_drop_below_is_kept_one_further_below_is_dropped():
    kept = 80 + 0.5 * (80 + 75 * math.exp(-3 * 5 / 80))
    assert aup([1.0, 2.0], [80.0, 75.0], 80.0) == pytest.approx(kept) == pytest.approx(151.088591931765)
    # 74.9 is more than 5 below y_1 = 80: dropped (d3LLM's get_aup asserts here instead).
    curve = aup_curve([1.0, 2.0, 3.0], [80.0, 75.0, 74.9], 80.0)
    assert curve.value == pytest.approx(kept)
    assert curve.dropped == [(3.0, 74.9)] and curve.kept == [(1.0, 80.0), (2.0, 75.0)]
    # A dropped point in the middle of the curve goes too (the reference filters every point, not only the last).
    assert aup([1.0, 2.0, 3.0], [80.0, 70.0, 78.0], 80.0) == pytest.approx(80 + 0.5 * 2 * (80 + 78 * W(78, 80)))
    assert aup([1.0, 2.0], [80.0, 60.0], 80.0, max_drop=25.0) > aup([1.0, 2.0], [80.0, 60.0], 80.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same length"):
        aup([1.0, 2.0], [80.0], 80.0)
    with pytest.raises(ValueError, match="at least one"):
        aup([], [], 80.0)
    with pytest.raises(ValueError, match="positive"):
        aup([0.0], [80.0], 80.0)
    with pytest.raises(ValueError, match="y_max"):
        aup([1.0], [80.0], 0.0)


# Values of d3LLM's own get_aup (AUP_leaderboard/aup_utils.py, commit e5bfcac), computed by running the
# reference function on these curves in a scratch directory outside this repository, y_max as its main.py
# takes it (the best accuracy of any method of the table).
REFERENCE = {
    ("LLaDA", "GSM8K-CoT", "d3LLM-LLaDA"): 637.6549264841269,
    ("LLaDA", "MATH", "dParallel-LLaDA"): 64.53561169036588,
    ("Dream", "MBPP-Instruct", "EAGLE-3"): 298.5704408802923,
}


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_published_curves_match_the_reference(key):
    family, benchmark, method = key
    table = leaderboard_points(family)
    table = table[table["benchmark"] == benchmark]
    y_max = table["accuracy_pct"].max()
    pts = table[table["method"] == method].sort_values("point")
    value = aup(pts["tpf"], pts["accuracy_pct"], y_max)
    assert value == pytest.approx(REFERENCE[key], rel=1e-12)
    # And a plainly written computation of the formula on the same points.
    (r1, y1), *rest = sorted(zip(pts["tpf"], pts["accuracy_pct"]))
    plain, prev = r1 * y1, (r1, y1)
    for r, y in rest:
        plain += (r - prev[0]) * (y * W(y, y_max) + prev[1] * W(prev[1], y_max)) / 2
        prev = (r, y)
    assert value == pytest.approx(plain, rel=1e-12)


def _table(rows):
    base = {"n": 100, "params": "", "tpf_lb": float("nan")}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_aup_table_groups_curves_and_takes_y_max_from_the_runs_without_a_published_table():
    t = _table([
        {"run": "base", "task": "arith", "model": "m", "sampler": "baseline", "params": "steps=64", "tpf": 0.5, "accuracy": 0.98},
        {"run": "dp1", "task": "arith", "model": "m", "sampler": "dparallel", "params": "threshold=0.1", "tpf": 2.0, "accuracy": 0.97},
        {"run": "dp5", "task": "arith", "model": "m", "sampler": "dparallel", "params": "threshold=0.5", "tpf": 3.0, "accuracy": 0.96},
        {"run": "dp9", "task": "arith", "model": "m", "sampler": "dparallel", "params": "threshold=0.9", "tpf": 4.0, "accuracy": 0.90},
        {"run": "dual", "task": "arith", "model": "m", "sampler": "dparallel", "params": "threshold=0.5 cache=dual", "tpf": 3.0, "accuracy": 0.95},
    ])
    s = aup_table(t).set_index("decoder")
    assert list(s.index) == ["baseline", "dparallel", "dparallel cache=dual"]
    assert (s["y_max"] == 98.0).all() and (s["y_max_from"] == "best of these runs").all()
    dp = s.loc["dparallel"]
    assert dp["points"] == 3 and dp["dropped"] == "dp9"  # 90 is more than 5 below 97
    assert dp["aup"] == pytest.approx(aup([2.0, 3.0], [97.0, 96.0], 98.0))
    assert s.loc["baseline", "aup"] == pytest.approx(0.5 * 98.0) and dp["tpf_kind"] == "dpbench"


def test_leaderboard_tpf_is_used_when_every_run_has_it_and_published_y_max_applies():
    t = _table([
        {"run": "a", "task": "gsm8k", "model": "GSAI-ML/LLaDA-8B-Instruct", "sampler": "dparallel", "params": "threshold=0.5",
         "tpf": 2.0, "tpf_lb": 2.5, "accuracy": 0.70},
    ])
    y_max, src = y_max_for("gsm8k", t)
    assert y_max == 74.98 and "D2F" in src  # the best of the LLaDA GSM8K-CoT table
    s = aup_table(t).iloc[0]
    assert s["tpf_kind"] == "leaderboard" and s["aup"] == pytest.approx(2.5 * 70.0)
    board = leaderboard_table(t)
    assert set(board["source"]) == {"published (LLaDA)", "dpbench (leaderboard TPF)"}
    ours = board[board["source"].str.startswith("dpbench")].iloc[0]
    assert ours["points"] == "2.50@70.00" and (board["y_max"] == 74.98).all()
    d3 = board[board["method"] == "d3LLM-LLaDA"].iloc[0]
    assert d3["aup"] == pytest.approx(REFERENCE[("LLaDA", "GSM8K-CoT", "d3LLM-LLaDA")])
    assert list(board["aup"]) == sorted(board["aup"], reverse=True)
    # Runs above every published method raise the shared y_max, for published curves too.
    better = t.assign(accuracy=0.80)
    assert y_max_for("gsm8k", better)[0] == 80.0
    assert leaderboard_table(_table([{"run": "x", "task": "arith", "model": "m", "sampler": "dparallel",
                                      "tpf": 1.0, "accuracy": 0.5}])).empty
