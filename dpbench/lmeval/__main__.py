"""``python -m dpbench.lmeval [lm-eval arguments]``: lm-eval's command line with dpbench loaded.

Importing `dpbench.lmeval` registers the ``dpbench`` model; dpbench's task
folder is added as ``--include_path`` unless one is given.

Example:
    python -m dpbench.lmeval --model dpbench --model_args model=tiny-arith,sampler=dparallel \
        --tasks dpbench_gsm8k --limit 10
"""

from __future__ import annotations

import sys

from . import TASKS_DIR  # noqa: F401  (registers the model)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--include_path" not in args and TASKS_DIR.is_dir() and len(args) > 1:
        args += ["--include_path", str(TASKS_DIR)]
    sys.argv = ["lm-eval", *args]
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
