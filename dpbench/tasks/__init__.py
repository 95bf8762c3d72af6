"""Tasks: built-in (`arith`, ...) and real benchmarks, behind one registry."""

from .base import Doc, Score, Task

_TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    """Class decorator: make a task available under ``name``. A name another class already holds
    is refused (re-running the same class definition, e.g. a module reload, replaces it)."""

    def wrap(cls: type[Task]) -> type[Task]:
        old = _TASKS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"task name {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def _load_builtin() -> None:
    # Imported lazily so `import dpbench.tasks` stays light; each module registers itself.
    import importlib

    for mod in ("arith", "gsm8k", "math", "humaneval", "mbpp", "code_arith"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{mod}":
                raise


def available_tasks() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)


def get_task(name: str, **kwargs) -> Task:
    import difflib

    _load_builtin()
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown task {name!r}{hint} (available: {', '.join(sorted(_TASKS))})")
    return _TASKS[name](**kwargs)


__all__ = ["Doc", "Score", "Task", "available_tasks", "get_task", "register_task"]
