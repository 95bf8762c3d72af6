"""The `dpbench` command line: thin wrappers that parse, call the library, print.

Each group of commands lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

from . import core  # noqa: F401  (each command module registers its commands on `app`)
from .app import app

for _mod in ("runs", "train", "distill", "evals", "bench"):
    try:
        __import__(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _err:  # a command group not present in this install
        if _err.name != f"{__name__}.{_mod}":
            raise


def main() -> None:
    from ..distributed import die_with_agent
    from ..errors import InputError
    from .errors import cli_error

    die_with_agent()  # a data-parallel rank: never outlive the launcher (no-op otherwise)
    try:
        app()
    except (InputError, OSError) as err:  # a runtime error a command did not catch itself: one line, exit 1
        raise SystemExit(cli_error(err).exit_code) from None
