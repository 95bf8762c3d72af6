"""Check every argument of a long command before its first forward, and report every problem at once.

A sweep that decodes 5 x 500 problems for 17 minutes and then stops on an unknown model
is the failure this module exists for. Each ``check_*`` function collects problems
(models, tasks, data files, samplers and their parameters, output directories) without
loading weights or decoding anything, and raises one `PreflightError` listing all of them.

Cheap by design: a model is checked by name and path (presets, local directories with a
``config.json``, hub ids; offline, a hub id must be in the local cache), samplers are built
(construction validates every parameter and costs nothing), and task documents are loaded
(arith is generated in milliseconds; a hub dataset that is offline fails here, at once).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class PreflightError(ValueError):
    """One or more arguments of a command are wrong; ``problems`` lists each one."""

    def __init__(self, command: str, problems: list[str]) -> None:
        self.command, self.problems = command, list(problems)
        head = f"{command}: {len(problems)} problem{'s' if len(problems) != 1 else ''} found before any work started"
        super().__init__(head + " (nothing was decoded):\n  - " + "\n  - ".join(self.problems))


class Problems:
    """Collects what is wrong; `check` runs one validation and keeps its error instead of stopping."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._seen: set[str] = set()  # error texts already reported (a bad name in a grid is reported once)

    def add(self, message: str) -> None:
        if message not in self.items:
            self.items.append(message)

    def check(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, KeyError, TypeError) as err:
            text = str(err).strip() or type(err).__name__
            if text not in self._seen:
                self._seen.add(text)
                self.add(f"{what}: {text}" if what else text)
            return None

    def raise_if_any(self, command: str) -> None:
        if self.items:
            raise PreflightError(command, self.items)


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_local(name: str) -> bool:
    """A path the user meant as a directory here (``./x``, ``/x``, ``~/x``, or under an existing folder)."""
    if name.startswith((".", "/", "~")):
        return True
    first = Path(name).parts[0] if Path(name).parts else ""
    return bool(first) and Path(first).is_dir()


def check_model(name: str) -> None:
    """Raise ValueError if ``name`` is not a loadable model here (no weights are read)."""
    from .models.presets import resolve_source

    try:
        source, preset = resolve_source(name)  # unknown names: ValueError with presets and did-you-mean
    except ValueError:
        if _looks_local(name):
            raise ValueError(f"model directory {name} does not exist") from None
        raise
    if preset is not None and preset.family == "builtin":
        if not os.path.isdir(source):
            raise ValueError(f"built-in model {name!r} is not shipped in this install (looked in {source})")
        return
    if os.path.isdir(source):
        if not (Path(source) / "config.json").is_file():
            raise ValueError(f"model directory {source} has no config.json (a model directory needs config.json, "
                             f"the weights and the tokenizer files)")
        return
    if _looks_local(name):
        raise ValueError(f"model directory {name} does not exist")
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(source, "config.json"), str):
            raise ValueError(f"{source!r} is not a local directory and the Hugging Face Hub is offline here "
                             f"(HF_HUB_OFFLINE) with no cached copy; download it where the hub is reachable "
                             f"(`hf download {source} --local-dir DIR`) and pass the directory")


def check_task(problems: Problems, name: str, *, data_file: str | None = None, split: str | None = "test",
               limit: int | None = None, need: int | None = None, options: dict | None = None):
    """The task object (or None, with the problem recorded); with ``split``, its documents must load."""
    from .tasks import get_task

    if data_file is not None and not Path(data_file).is_file():
        problems.add(f"data file {data_file} does not exist")
        return None
    kwargs = {**(options or {}), **({"data_file": data_file} if data_file is not None else {})}
    try:
        task = get_task(name, **kwargs)
    except TypeError:
        given = ", ".join("--data-file" if k == "data_file" else f"task option {k!r}" for k in kwargs)
        problems.add(f"task {name!r} does not take {given}")
        return None
    except ValueError as err:
        problems.add(str(err))
        return None
    if limit is not None and limit < 0:
        problems.add(f"limit must be >= 0, got {limit}")
    elif split is not None:
        docs = problems.check(f"task {name!r}", task.docs, split, limit)
        if docs is not None and need is not None and len(docs) < need:
            problems.add(f"task {name!r} has only {len(docs)} {split} documents, {need} needed")
    return task


def check_sampler(problems: Problems, name: str, params: dict[str, Any] | None, task=None, what: str = ""):
    """The built sampler (construction validates every parameter), or None with the problem recorded."""
    from .samplers import build_sampler

    return problems.check(what, build_sampler, name, dict(params or {}), task=task)


def check_models(problems: Problems, names: Iterable[str], what: str = "model") -> None:
    for name in dict.fromkeys(names):
        problems.check(f"{what} {name}" if what else "", check_model, name)


def check_positive(problems: Problems, **values: int | None) -> None:
    for key, v in values.items():
        if v is not None and v < 1:
            problems.add(f"{key.replace('_', '-')} must be >= 1, got {v}")


# The runner's engines (dpbench.runner.ENGINES; a test keeps the two equal). Not imported from the
# runner: it imports the lm-eval bridge, which imports this module.
ENGINES = ("auto", "dpbench", "lmeval")


def check_run(cfg) -> None:
    """Everything `dpbench run` needs (a `dpbench.runner.RunConfig`), checked before any loading."""
    p = Problems()
    check_positive(p, batch_size=cfg.batch_size)
    if cfg.engine not in ENGINES:
        p.add(f"engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    check_models(p, [cfg.model])
    task = check_task(p, cfg.task, data_file=cfg.data_file, split=cfg.split, limit=cfg.limit)
    check_sampler(p, cfg.sampler, cfg.params, task)
    p.raise_if_any("dpbench run")


def check_bench(cfg) -> None:
    """Everything `dpbench bench` needs (a `dpbench.bench.BenchConfig`): model, task documents, and the sampler
    of every sampler x cache x step path combination, checked before the model is loaded."""
    from .params import cache_spec

    p = Problems()
    check_models(p, [cfg.model])
    task = check_task(p, cfg.task, split="test", limit=cfg.samples, need=cfg.samples)
    if task is not None and cfg.prompt_tokens != [None] and cfg.prompt_fill == "fewshot":
        p.check(f"task {cfg.task!r} (few-shot prompts come from its train split)", task.docs, "train", 1)
    for name in cfg.samplers:
        for cache in cfg.caches:
            engine = p.check(f"--cache {cache}", cache_spec, cache)
            if engine is None:
                continue
            for step in cfg.step_paths:
                check_sampler(p, name, {**cfg.params, **engine, "step_kernel": step == "kernel"}, task,
                              what=f"{name} cache={cache}")
    p.raise_if_any("dpbench bench")


def check_distill(teacher: str | None, task_name: str | None, cfg, stages, out: Path) -> None:
    """Everything `dpbench distill` needs: teacher, task, the teacher's decoding parameters, an existing
    dataset, and for a run that starts at a later stage the earlier stage's output."""
    from .distill.pipeline import STAGES, DistillPaths

    p = Problems()
    if not teacher:
        p.add("give --teacher (or teacher: in the config)")
    else:
        check_models(p, [teacher], what="teacher")
    bad = [s for s in stages if s not in STAGES]
    if bad:
        p.add(f"unknown stage(s) {', '.join(bad)}; valid: {', '.join(STAGES)}")
    task = None
    if not task_name:
        p.add("give --task (or task: in the config)")
    else:
        tc = cfg.trajectories
        needs_docs = "trajectories" in stages and not tc.dataset
        task = check_task(p, task_name, split=tc.split if needs_docs else None, limit=tc.limit,
                          options=cfg.task_options)
    if task is not None:
        tc = cfg.trajectories
        check_sampler(p, tc.sampler, tc.params, task, what=f"trajectories.params (the teacher's {tc.sampler})")
    if cfg.trajectories.dataset and not Path(cfg.trajectories.dataset).exists():
        p.add(f"dataset {cfg.trajectories.dataset} does not exist")
    from .distill.train import FINAL, STATE
    from .distill.trajectories import KEPT

    paths = DistillPaths(Path(out))
    if "train" in stages and "trajectories" not in stages and not (paths.trajectories / KEPT).is_file():
        p.add(f"--stage train needs the trajectories stage's output, {paths.trajectories / KEPT}, "
              f"which does not exist (run --stage trajectories first)")
    if "merge" in stages and "train" not in stages and not (paths.train / FINAL / STATE).is_file():
        p.add(f"--stage merge needs a finished train stage, {paths.train / FINAL / STATE}, which does not exist")
    p.raise_if_any("dpbench distill")


__all__ = ["check_bench", "check_distill", "PreflightError", "Problems", "check_model", "check_models", "check_positive", "check_run", "check_sampler",
           "check_task"]
