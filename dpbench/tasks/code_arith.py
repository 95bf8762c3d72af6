"""Built-in task `code_arith`: write a one-line Python function, scored by running unit tests.

Generated from a seed like `arith`, so it needs no dataset and exercises the
whole code path (prompt -> sampler -> sanitize -> sandboxed tests) offline
with the tiny built-in model class. A problem asks for ``f(x)`` computing one
of three expression shapes with small constants, e.g.::

    Write a Python function f(x) that returns (x + 3) * 4.
    def f(x):
        return (x + 3) * 4

and is checked with asserts on five inputs. Train and test are split by a
hash of the expression, so no test expression is seen in training.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from ..execution import sanitize
from . import register_task
from .base import Doc
from .code import CodeTask

SPLITS = ("train", "test")
INPUTS = (0, 1, 2, 5, -3)
SHAPES = {
    # name: (expression template, value function)
    "affine": ("x * {a} + {b}", lambda x, a, b: x * a + b),
    "shift_scale": ("(x + {b}) * {a}", lambda x, a, b: (x + b) * a),
    "square_plus": ("x * x + {b}", lambda x, a, b: x * x + b),
}


def problems() -> list[tuple[str, int, int]]:
    """Every (shape, a, b) in a fixed order; ``a`` is unused by square_plus."""
    out = []
    for shape in SHAPES:
        for a in ([1] if shape == "square_plus" else range(2, 10)):
            out += [(shape, a, b) for b in range(1, 10)]
    return out


def expression(shape: str, a: int, b: int) -> str:
    return SHAPES[shape][0].format(a=a, b=b)


@register_task("code_arith")
class CodeArithTask(CodeTask):
    """Tiny offline code task: one-line arithmetic functions with unit tests."""

    default_params = {"gen_length": 48, "block_length": 16, "steps": 48}

    def __init__(self, seed: int = 1234, test_fraction: float = 0.2, **kwargs: Any) -> None:
        if kwargs.get("data_file") is not None:
            raise ValueError("code_arith is generated from its seed; it takes no data file")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        super().__init__(**kwargs)
        self.seed, self.test_fraction = seed, test_fraction

    def is_test(self, shape: str, a: int, b: int) -> bool:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{expression(shape, a, b)}".encode()).digest()[:8], "big")
        return (h % 1_000_000) < self.test_fraction * 1_000_000

    def load(self, split: str) -> list[Doc]:
        if split not in SPLITS:
            raise ValueError(f"code_arith has splits {', '.join(SPLITS)}, got {split!r}")
        chosen = [p for p in problems() if self.is_test(*p) == (split == "test")]
        random.Random(f"code_arith:{self.seed}:{split}").shuffle(chosen)
        docs = []
        for i, (shape, a, b) in enumerate(chosen):
            expr = expression(shape, a, b)
            tests = [f"assert f({x}) == {SHAPES[shape][1](x, a, b)}" for x in INPUTS]
            docs.append(Doc(doc_id=f"{split}-{i}", question=f"Write a Python function f(x) that returns {expr}.",
                            target=f"def f(x):\n    return {expr}\n", meta={"tests": tests, "entry_point": "f"}))
        return docs

    def program(self, doc: Doc, completion: str) -> tuple[str, str]:
        code = sanitize(self.cut(completion), "f")
        return code, code + "\n" + "\n".join(doc.meta["tests"]) + "\n"

    def test_parts(self, doc: Doc) -> tuple[str, str, tuple[str, ...]]:
        return "", "\n".join(doc.meta["tests"]) + "\n", ("f",)


__all__ = ["CodeArithTask", "expression", "problems"]
