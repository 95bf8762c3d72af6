"""Lazy package attributes: a package names what it exports, the module loads on first use.

Packages whose modules import transformers or peft (seconds on a CPU) export through this,
so that a command that only checks its arguments answers fast (`dpbench distill --bogus`).
"""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, names: dict[str, str], namespace: dict):
    """A module ``__getattr__`` for ``package``: ``names`` maps an exported name to its submodule."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{names[name]}"), name)
        namespace[name] = value  # later lookups skip this hook
        return value

    return __getattr__
