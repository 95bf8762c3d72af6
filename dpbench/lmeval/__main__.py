"""``python -m dpbench.lmeval [lm-eval arguments]``: lm-eval's command line with dpbench loaded.

lm-eval 0.4.13's own ``lm_eval`` command reads no entry points, so it never learns the
``dpbench`` model: this wrapper imports dpbench (registering it), adds dpbench's task
folder as ``--include_path`` unless one is given, and then runs lm-eval's command line.
On top of lm-eval it:

- checks ``--model dpbench``'s model args (model, sampler, parameters), ``--gen_kwargs``
  and the data for dpbench's tasks before lm-eval loads anything, reporting every problem;
- takes ``--data_file PATH`` (or ``TASK=PATH``, repeatable; TASK gsm8k or minerva_math):
  dpbench_gsm8k / dpbench_minerva_math read that JSONL (the hub's schema) instead of the hub,
  the equivalent of ``dpbench run --data-file``;
- writes dpbench's NFE, tokens per forward and latency into the results lm-eval saves
  (`dpbench.lmeval.results`);
- turns a hub that cannot be reached into one ``error:`` line saying what to do.

Example:
    python -m dpbench.lmeval --model dpbench --model_args pretrained=tiny-arith,sampler=dparallel \\
        --tasks dpbench_gsm8k --data_file gsm8k_test.jsonl --limit 10 --output_path runs/lmeval --log_samples
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from . import TASKS_DIR  # noqa: F401  (registers the model)
from .tasks import LMEVAL_TASKS, local_task_dir

HUB = {"dpbench_gsm8k": "openai/gsm8k", "dpbench_minerva_math": "EleutherAI/hendrycks_math"}


def pop_data_files(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """``args`` without ``--data_file X`` / ``--data_file=X``, and the files by lm-eval task name."""
    rest, specs, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a == "--data_file" and i + 1 < len(args):
            specs.append(args[i + 1])
            i += 2
            continue
        if a.startswith("--data_file="):
            specs.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    files: dict[str, str] = {}
    for spec in specs:
        task, eq, path = spec.partition("=")
        if not eq:
            task, path = "", spec
        files[task] = path
    return rest, files


def _tasks(ns) -> list[str]:
    raw = ns.tasks or []
    raw = raw if isinstance(raw, list) else [raw]
    return [t.strip() for item in raw for t in str(item).split(",") if t.strip()]


def _resolve_files(files: dict[str, str], tasks: list[str], problems) -> dict[str, str]:
    """``--data_file`` specs -> {lm-eval task name: absolute path}."""
    ours = [t for t in tasks if t in HUB]
    out = {}
    for key, path in files.items():
        if not key:
            if len(ours) != 1:
                problems.add(f"--data_file {path}: say which task it is for (TASK=PATH, TASK one of "
                             f"{', '.join(LMEVAL_TASKS)}), --tasks has {len(ours)} of dpbench's")
                continue
            key = ours[0]
        name = LMEVAL_TASKS[key][0] if key in LMEVAL_TASKS else key
        if name not in HUB:
            problems.add(f"--data_file {key}={path}: no dpbench task {key!r} reads a data file "
                         f"(valid: {', '.join(LMEVAL_TASKS)})")
        elif not Path(path).is_file():
            problems.add(f"--data_file {path} does not exist")
        else:
            out[name] = str(Path(path).resolve())
    return out


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _cached(hub_id: str) -> bool:
    root = Path(os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "datasets")
    return (root / hub_id.replace("/", "___")).is_dir()


def check(ns, files: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Problems with the dpbench model's arguments, gen_kwargs and data, before lm-eval starts."""
    from ..preflight import Problems, check_model, check_sampler
    from .genkwargs import sampler_overrides

    p = Problems()
    tasks = _tasks(ns)
    resolved = _resolve_files(files, tasks, p)
    for t in tasks:
        if t in HUB and t not in resolved and _offline() and not _cached(HUB[t]):
            key = next(k for k, v in LMEVAL_TASKS.items() if v[0] == t)
            p.add(f"{t} reads {HUB[t]} from the hub, which is offline here (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) and not "
                  f"cached: pass --data_file {key}={key}_test.jsonl (the hub's JSONL schema; docs/benchmarks.md, Offline data)")
    if ns.model == "dpbench":
        args = dict(ns.model_args or {})
        model = args.pop("pretrained", None) or args.pop("model", "tiny-arith")
        args.pop("model", None)
        sampler = args.pop("sampler", "dparallel")
        for k in ("batch_size", "device", "dtype", "chat", "trust_remote_code", "seed", "warmup", "records_path", "resume",
                  "max_batch_size"):
            args.pop(k, None)
        p.check(f"model {model}", check_model, model)
        smp = check_sampler(p, sampler, args)
        if smp is not None and ns.gen_kwargs:
            p.check("--gen_kwargs", sampler_overrides, dict(ns.gen_kwargs), smp.params())
    return p.items, resolved


def include_dir(files: dict[str, str]) -> str:
    """A task folder where dpbench's tasks with a data file read it; the others are the shipped ones."""
    work = Path(tempfile.mkdtemp(prefix="dpbench-lmeval-tasks-"))
    for name, path in files.items():
        local_task_dir(name, path, work)
    for f in TASKS_DIR.iterdir():
        if f.name.startswith("__") or ("dpbench_gsm8k" in files and f.name == "gsm8k.yaml") or (
                "dpbench_minerva_math" in files and f.name.startswith("minerva_math")):
            continue  # replaced by its local-data variant (two definitions of one task would clash)
        (work / f.name).symlink_to(f)
    return str(work)


def _hub_hint(err: BaseException) -> str | None:
    seen: BaseException | None = err
    while seen is not None:
        name = type(seen).__name__
        if "ConnectionError" in name or "OfflineMode" in name or "LocalEntryNotFound" in name or "Timeout" in name:
            return (f"could not reach the Hugging Face Hub ({name}); dpbench's tasks can read local data: "
                    f"--data_file gsm8k=gsm8k_test.jsonl / minerva_math=math_test.jsonl (docs/benchmarks.md, Offline data)")
        seen = seen.__cause__ or seen.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    args, files = pop_data_files(list(sys.argv[1:] if argv is None else argv))
    sys.argv = ["lm-eval", *args]
    from lm_eval._cli.harness import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    parser = HarnessCLI()
    ns = parser.parse_args()
    if getattr(ns, "command", None) == "run" or hasattr(ns, "tasks"):
        problems, resolved = check(ns, files)
        if problems:
            print("error: " + "\nerror: ".join(problems), file=sys.stderr)
            raise SystemExit(2)
        if getattr(ns, "include_path", None) is None and (resolved or TASKS_DIR.is_dir()):
            ns.include_path = include_dir(resolved) if resolved else str(TASKS_DIR)
        _patch_simple_evaluate()
    try:
        parser.execute(ns)
    except Exception as err:  # noqa: BLE001
        hint = _hub_hint(err)
        if hint is None:
            raise
        print(f"error: {hint}", file=sys.stderr)
        raise SystemExit(1) from None


def _patch_simple_evaluate() -> None:
    """Wrap lm-eval's ``simple_evaluate`` so the results it returns (and the CLI saves) carry dpbench's figures."""
    import lm_eval

    from .model import _TRACK, latest_instance
    from .results import annotate

    _TRACK["on"] = True
    original = lm_eval.simple_evaluate
    if getattr(original, "_dpbench", False):
        return

    def simple_evaluate(*a, **kw):
        results = original(*a, **kw)
        lm = latest_instance()
        if lm is not None:
            parts = lm.gather_object(list(lm.records))  # every rank takes part; rank 0 gets all records
            if results is not None and parts:
                annotate(results, lm, [r for part in parts for r in part])
        return results

    simple_evaluate._dpbench = True
    lm_eval.simple_evaluate = simple_evaluate


if __name__ == "__main__":
    main()
