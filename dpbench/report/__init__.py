"""Reports and charts from run directories (``manifest.json`` + ``samples.jsonl``) and lm-eval outputs.

`summarize` gives one pandas row per run; `write_report` writes CSV and
Markdown; `aup` is the d3LLM leaderboard's accuracy-under-parallelism score and
`aup_table` / `leaderboard_table` apply it to runs; `dpbench.report.plots.plot_runs`
draws the charts (imported lazily: matplotlib is only needed for charts).
"""

from .aup import aup, aup_curve
from .scoreboard import aup_table, leaderboard_table
from .table import format_table, key_params, load_records, load_run, summarize, to_markdown, wilson_interval, write_report


def plot_runs(*args, **kwargs):
    """See `dpbench.report.plots.plot_runs`."""
    from .plots import plot_runs as _plot_runs

    return _plot_runs(*args, **kwargs)


__all__ = ["aup", "aup_curve", "aup_table", "format_table", "key_params", "leaderboard_table", "load_records",
           "load_run", "plot_runs", "summarize", "to_markdown", "wilson_interval", "write_report"]
