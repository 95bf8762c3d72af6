"""Error classes shared by the library and the CLI.

The CLI's convention (`dpbench.cli.errors`): a *usage* error (an option value
that can never work: unknown sampler, ``--workers 0``) keeps Typer's usage
format and exit code 2; a *runtime* error (the input cannot be used: a missing
or corrupt file, a run directory in use, no CUDA here, a model that cannot hold
the prompt) prints one line ``error: ...`` and exits 1. Plain ``ValueError`` is
usage; `InputError` and ``OSError`` are runtime.
"""

from __future__ import annotations


class InputError(ValueError):
    """The input (a file, a run directory, a model, this machine) cannot be used as given."""


__all__ = ["InputError"]
