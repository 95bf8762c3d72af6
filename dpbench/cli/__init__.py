"""The `dpbench` command line: thin wrappers that parse, call the library, print.

Each group of commands lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dpbench",
    help="Benchmark parallel decoding of diffusion language models: steps, wall-clock, accuracy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules (each registers its commands on `app` when imported).
from . import core  # noqa: E402,F401

for _mod in ("runs", "train", "distill", "evals", "bench"):
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _err:  # a command group not present in this install
        if _err.name != f"{__name__}.{_mod}":
            raise


def main() -> None:
    app()
