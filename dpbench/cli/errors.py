"""The CLI's error convention, one helper for every command (see `dpbench.errors`).

Usage errors (a plain ``ValueError``: an option value that can never work) keep
Typer's usage format and exit code 2. Runtime errors (`InputError`, ``OSError``:
the input or the machine cannot serve the command) print one line
``error: ...`` on stderr and exit 1: no usage text, no traceback.
"""

from __future__ import annotations

import typer

from ..errors import InputError


def is_runtime(err: BaseException) -> bool:
    return isinstance(err, (InputError, OSError)) or not isinstance(err, ValueError)


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def cli_error(err: BaseException) -> Exception:
    """What a command raises for ``err``: ``typer.BadParameter`` (usage) or, after printing, ``typer.Exit(1)``."""
    if is_runtime(err):
        typer.echo(f"error: {one_line(err)}", err=True)
        return typer.Exit(1)
    return typer.BadParameter(str(err))


__all__ = ["cli_error", "is_runtime", "one_line"]
