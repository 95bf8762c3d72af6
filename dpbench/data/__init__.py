"""Data shipped with dpbench: the dParallel paper's reported results.

``paper_results.csv`` transcribes Tables 1 and 2 of the dParallel paper (Chen
et al., arXiv 2509.26488): per model (LLaDA-8B-Instruct, Dream-7B-Instruct),
benchmark and method, the mean decoding steps, latency in seconds on the
authors' (unnamed) GPU, speedup over the first row of the benchmark, and
accuracy in percent. LLaDA rows use gen length 256, block 32; dParallel's
entropy threshold is 0.5 (MBPP 0.45).
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
PAPER_RESULTS = DATA_DIR / "paper_results.csv"
# Paper benchmark name -> dpbench task name.
PAPER_TASKS = {"GSM8K-CoT": "gsm8k", "MATH": "minerva_math", "HumanEval": "humaneval", "MBPP": "mbpp",
               "HumanEval-Instruct": "humaneval", "MBPP-Instruct": "mbpp"}


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


__all__ = ["PAPER_RESULTS", "PAPER_TASKS", "paper_results"]
