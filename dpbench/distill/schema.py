"""Strict YAML/CLI settings for dataclass configs (distill recipes, pretrain recipes).

A recipe file is read into nested dataclasses; every key must be a field
(unknown keys are refused with the valid ones listed) and every value must fit
the field's type. YAML 1.1 reads ``2e-5`` as a string, so numbers given as
strings are converted, but nothing is guessed: a bool must be a YAML bool or
one of true/false/yes/no/on/off/1/0 (``ture`` is an error, not False), an int
field refuses 2.5 and True, a string field refuses a list.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def build(cls: type, data: dict[str, Any], prefix: str = ""):
    """Instantiate dataclass ``cls`` from ``data``, refusing unknown keys and ill-typed values."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(prefix + str(u) for u in unknown)}; "
                         f"valid: {', '.join(prefix + n for n in names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{name} must be a mapping, got {value!r}")
            kwargs[name] = build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(value, hint, prefix + name)
    return cls(**kwargs)


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` converted to the field type ``hint``; ValueError naming the key if it does not fit."""
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None -> X
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(hint)):
            return None
        base = args[0]
    if value is None:
        raise ValueError(f"config key {name} must not be null")
    origin = typing.get_origin(base) or base
    try:
        if origin is bool:
            return _bool(value)
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if origin in (list, tuple):
            args = typing.get_args(base)
            item = args[0] if args else str
            items = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError
            out = [coerce(v, item, f"{name}[{i}]") for i, v in enumerate(items)]
            return tuple(out) if origin is tuple else out
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if origin is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        return value
    except (TypeError, ValueError) as err:
        if str(err).startswith("config key"):
            raise
        what = "a bool (true/false)" if origin is bool else getattr(base, "__name__", str(base))
        raise ValueError(f"config key {name} expects {what}, got {value!r}") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise ValueError
