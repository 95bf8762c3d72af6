"""Data shipped with dpbench: the dParallel paper's reported results and the d3LLM AUP leaderboard's points.

``paper_results.csv`` transcribes Tables 1 and 2 of the dParallel paper (Chen
et al., arXiv 2509.26488): per model (LLaDA-8B-Instruct, Dream-7B-Instruct),
benchmark and method, the mean decoding steps, latency in seconds on the
authors' (unnamed) GPU, speedup over the first row of the benchmark, and
accuracy in percent. LLaDA rows use gen length 256, block 32; dParallel's
entropy threshold is 0.5 (MBPP 0.45).

``leaderboard_points.csv`` holds the published (tokens per forward, accuracy %)
points of the d3LLM AUP leaderboard (hao-ai-lab/d3LLM ``AUP_leaderboard/data_*.yaml``,
commit e5bfcac): ``family`` (the table: LLaDA, Dream, Dream-Coder), ``task``,
``method``, ``point`` (order in the source), ``tpf``, ``accuracy_pct``. The point
at TPF 1.0 of each method is its slow (one token per forward) setting; the
autoregressive rows (Qwen-2.5-7B-it, EAGLE-3) are kept because the leaderboard
takes y_max over every method of a table, them included.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
PAPER_RESULTS = DATA_DIR / "paper_results.csv"
LEADERBOARD_POINTS = DATA_DIR / "leaderboard_points.csv"
# Paper / leaderboard benchmark name -> dpbench task name (Long-GSM8K, HumanEval+ and MBPP+ have none).
PAPER_TASKS = {"GSM8K-CoT": "gsm8k", "MATH": "minerva_math", "HumanEval": "humaneval", "MBPP": "mbpp",
               "HumanEval-Instruct": "humaneval", "MBPP-Instruct": "mbpp"}
LEADERBOARD_FAMILIES = ("LLaDA", "Dream", "Dream-Coder")


def paper_results(model: str | None = None):
    """The paper's table as a DataFrame (one row per model, benchmark, method), with a ``task`` column.

    ``model`` filters by a case-insensitive substring of the model name (``"llada"``, ``"dream"``).
    """
    import pandas as pd

    df = pd.read_csv(PAPER_RESULTS)
    df["task"] = df["benchmark"].map(PAPER_TASKS)
    if model is not None:
        df = df[df["model"].str.lower().str.contains(model.lower(), regex=False)]
        if df.empty:
            raise ValueError(f"no paper rows for model {model!r}; models: LLaDA-8B-Instruct, Dream-7B-Instruct")
    return df.reset_index(drop=True)


def leaderboard_points(family: str | None = None):
    """The leaderboard's points as a DataFrame with a dpbench ``task`` column (None where dpbench has no such task).

    ``family`` (case-insensitive: ``llada``, ``dream``, ``dream-coder``) keeps one table.
    """
    import pandas as pd

    df = pd.read_csv(LEADERBOARD_POINTS)
    df = df.rename(columns={"task": "benchmark"})
    df["task"] = df["benchmark"].map(PAPER_TASKS)
    if family is not None:
        names = {f.lower(): f for f in LEADERBOARD_FAMILIES}
        if family.lower() not in names:
            raise ValueError(f"unknown leaderboard family {family!r}; valid: {', '.join(LEADERBOARD_FAMILIES)}")
        df = df[df["family"] == names[family.lower()]]
    return df.reset_index(drop=True)


__all__ = ["LEADERBOARD_FAMILIES", "LEADERBOARD_POINTS", "PAPER_RESULTS", "PAPER_TASKS", "leaderboard_points",
           "paper_results"]
