"""Lazy package attributes: a package names what it exports, the module loads on first use.

Packages whose modules import transformers or peft (seconds on a CPU) export through this,
so that a command that only checks its arguments answers fast (`dpbench distill --bogus`).
"""

from __future__ import annotations

import sys
import types
from importlib import import_module


def lazy_package(package: str, names: dict[str, str]) -> None:
    """Make the package ``package`` export ``names`` (exported name -> its submodule) lazily.

    Where an export shares its submodule's name (`dpbench.train.pretrain`, the function), the
    export wins, as it would after an eager ``from .pretrain import pretrain``: importing the
    submodule later does not rebind the package attribute to the module.
    """

    class LazyPackage(types.ModuleType):
        def __getattr__(self, name: str):
            if name not in names:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = getattr(import_module(f"{package}.{names[name]}"), name)
            super().__setattr__(name, value)  # later lookups skip this hook
            return value

        def __setattr__(self, name: str, value) -> None:
            if name in names and isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                return  # the import system binding the submodule over the export of the same name
            super().__setattr__(name, value)

        def __dir__(self):
            return sorted({*super().__dir__(), *names})

    sys.modules[package].__class__ = LazyPackage
