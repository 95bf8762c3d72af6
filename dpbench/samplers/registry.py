"""The sampler registry: names with aliases, validated params, "did you mean" on a miss.

Third-party packages register samplers through the entry-point group
``dpbench.samplers`` (``name = "pkg.module:SamplerClass"``); dpbench's own use
the `register_sampler` decorator.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable

from ..params import cache_spec, coerce

_REGISTRY: dict[str, type] = {}
_ALIASES: dict[str, str] = {}
_ENTRY_POINTS_LOADED = False
ENTRY_POINT_GROUP = "dpbench.samplers"


def register_sampler(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: make a sampler available under ``name`` (and ``aliases``)."""

    def wrap(cls: type) -> type:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"sampler name {key!r} is already registered")
        _REGISTRY[name] = cls
        _ALIASES.update({a: name for a in aliases})
        cls.name = name
        cls.aliases = aliases
        return cls

    return wrap


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY or ep.name in _ALIASES:
            if getattr(_REGISTRY.get(_ALIASES.get(ep.name, ep.name)), "__module__", None) != ep.module:
                warnings.warn(f"dpbench: entry point {ep.name!r} = {ep.value!r} ignored: that sampler name is already "
                              f"registered by {_REGISTRY[_ALIASES.get(ep.name, ep.name)].__module__}", RuntimeWarning)
            continue
        cls = ep.load()
        if ep.name not in _REGISTRY:  # the module may have registered itself on import
            register_sampler(ep.name)(cls)


def available() -> list[str]:
    """Registered sampler names (aliases not included), sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def sampler_class(name: str) -> type:
    _load_entry_points()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        choices = list(_REGISTRY) + list(_ALIASES)
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown sampler {name!r}{hint} (available: {', '.join(available())})")
    return _REGISTRY[key]


def sampler_params(name: str) -> dict[str, Any]:
    """Parameter names of a sampler with their defaults."""
    return _params_of(sampler_class(name))


def _params_of(cls: type) -> dict[str, Any]:
    """Samplers built on `BlockSampler` declare their params in ``Config`` / ``Engine`` dataclasses;
    others as keyword-only arguments of ``__init__``."""
    if hasattr(cls, "param_defaults"):
        return cls.param_defaults()
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in sig.parameters.values() if p.name != "self" and p.kind is p.KEYWORD_ONLY}


def _resolve(name: str, params: dict[str, Any] | None, task) -> tuple[type, dict[str, Any]]:
    cls = sampler_class(name)  # the one place a name or alias becomes a class
    valid = _params_of(cls)
    user = dict(params or {})
    if isinstance(user.get("cache"), str) and ("+" in user["cache"] or user["cache"] == "graph"):
        user.update(cache_spec(user.pop("cache")))
    base = {k: v for k, v in task.params_for(cls.name).items() if k in valid} if task is not None else {}
    merged = {**base, **user}
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for sampler {cls.name!r}; valid: {', '.join(valid)}")
    return cls, {k: coerce(k, v, valid[k]) for k, v in merged.items()}


def resolve_params(name: str, params: dict[str, Any] | None = None, *, task=None) -> tuple[str, dict[str, Any]]:
    """The one path from what a user typed to a sampler's arguments: ``(canonical name, params)``.

    The alias is resolved once; the task's defaults for that sampler come first (only those
    it accepts: ``steps`` is baseline's, a threshold sampler would refuse it), then the
    user's ``params`` (CLI strings are fine, typed by `dpbench.params.coerce`; ``cache=dual+16``
    / ``cache=graph`` are read as `dpbench.params.cache_spec` spells them). Unknown names and
    params raise ValueError naming the valid ones.
    """
    cls, typed = _resolve(name, params, task)
    return cls.name, typed


def build_sampler(name: str, params: dict[str, Any] | None = None, *, task=None):
    """The sampler `resolve_params` describes: what every command uses to build its sampler."""
    cls, typed = _resolve(name, params, task)
    return cls(**typed)


def get_sampler(name: str, **params: Any):
    """Build sampler ``name`` with ``params`` (`build_sampler` without task defaults); unknown
    names or params raise ValueError, strings are typed like the parameter's default."""
    return build_sampler(name, params)
