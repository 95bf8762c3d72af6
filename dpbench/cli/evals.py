"""`dpbench score`: re-score saved completions without generating."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .errors import cli_error


@app.command()
def score(
    task: str = typer.Argument(..., help="Task whose scorer to use, e.g. humaneval, mbpp, gsm8k."),
    completions: Path = typer.Option(..., "--completions", "-c", help="JSONL: task_id or doc_id, and completion."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output dir (default results/scores/<task>-<file>)."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Local task data in the hub's JSONL schema."),
    split: str = typer.Option("test", help="Document split the completions belong to."),
    timeout: Optional[float] = typer.Option(None, help="Code tasks: seconds per program (default 10)."),
    workers: int = typer.Option(1, help="Code tasks: programs run at the same time."),
) -> None:
    """Score saved completions and write samples.jsonl, summary.json and manifest.json.

    Example: dpbench score humaneval --completions results/runs/he/samples.jsonl --out results/rescored/he
    """
    from ..scoring import rescore

    try:
        summary = rescore(task, completions, out, data_file=data_file, split=split, timeout=timeout, workers=workers)
    except (ValueError, OSError) as err:
        raise cli_error(err) from None
    typer.echo(str(summary))
