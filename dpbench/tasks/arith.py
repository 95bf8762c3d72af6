"""Built-in task `arith`: add a few single-digit numbers step by step, answer as ``#### N``.

Generated deterministically from a seed (see ``tasks/arith.yaml``), so no
dataset hub is needed. A solution adds the numbers in an order chosen at random
for each document, e.g. for ``5 + 8 + 3``::

    8+3=11
    11+5=16
    #### 16

Every order is correct, so a masked diffusion model trained on this data is
uncertain at many positions at once until it commits to one: the sequential
certainty convergence that parallel decoders and dParallel's distillation
target. Only the final ``#### N`` is scored.

Splits are disjoint by the multiset of numbers: no problem of one split is a
reordering of a problem of another. ``test`` is decided first (a hash of the
multiset against ``test_fraction``, unchanged since the first release, so every
committed test number stays comparable); ``validation`` then takes a second,
independent hash of the remaining multisets against ``validation_fraction``;
``train`` is the rest. Validation is where checkpoints, thresholds and recipes
are chosen, on problems that the distillation data never contain.

``validation_fraction: 0`` gives the pool before validation was carved out
(train = every non-test multiset): the data the shipped ``tiny-arith`` teacher
was pretrained on, so that teacher has seen the validation multisets (see
results/distill/README.md for what that exposure costs).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import register_task
from .base import Doc, Score, Task
from .extract import extract_answer, numbers_equal

# The repository's declarative definition; an installed wheel may not carry it.
YAML_PATH = Path(__file__).resolve().parents[2] / "tasks" / "arith.yaml"
SPLITS = ("train", "validation", "test")


@dataclass
class ArithConfig:
    """Mirrors tasks/arith.yaml (the file wins when present)."""

    seed: int = 1234
    terms: tuple[int, int] = (3, 4)
    values: tuple[int, int] = (1, 9)
    test_fraction: float = 0.2
    validation_fraction: float = 0.15  # of the non-test multisets
    train_size: int = 50000
    test_size: int = 500
    default_params: dict[str, Any] = field(
        default_factory=lambda: {"gen_length": 64, "block_length": 16, "steps": 64}
    )
    sampler_params: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"dparallel": {"threshold": 0.5}, "confidence": {"threshold": 0.9}}
    )

    def __post_init__(self) -> None:
        self.terms, self.values = tuple(self.terms), tuple(self.values)
        lo, hi = self.terms
        if not 2 <= lo <= hi:
            raise ValueError(f"terms must be a range [lo, hi] with 2 <= lo <= hi, got {list(self.terms)}")
        if not 0 <= self.values[0] <= self.values[1]:
            raise ValueError(f"values must be a range [lo, hi] with 0 <= lo <= hi, got {list(self.values)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, **overrides: Any) -> "ArithConfig":
        """Read the YAML definition (if it exists), then apply keyword overrides."""
        data: dict[str, Any] = {}
        p = Path(path) if path is not None else YAML_PATH
        if p.is_file():
            import yaml

            data = yaml.safe_load(p.read_text()) or {}
        elif path is not None:
            raise ValueError(f"arith task definition not found: {p}")
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown arith option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        data = {k: v for k, v in data.items() if k in valid}
        return cls(**{**data, **overrides})


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; the split must not be.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _problem_key(numbers: tuple[int, ...]) -> str:
    return "+".join(str(n) for n in sorted(numbers))


def solution_text(numbers: tuple[int, ...], order: list[int]) -> str:
    """Step-by-step solution adding ``numbers`` in the given ``order`` (indices), then ``#### total``."""
    seq = [numbers[i] for i in order]
    lines, acc = [], seq[0]
    for n in seq[1:]:
        lines.append(f"{acc}+{n}={acc + n}")
        acc += n
    return "\n".join(lines) + f"\n#### {acc}"


def question_text(numbers: tuple[int, ...]) -> str:
    return "What is " + " + ".join(str(n) for n in numbers) + "?"


@register_task("arith")
class ArithTask(Task):
    """Sums of 3-4 single-digit numbers with a step-by-step solution in a random order."""

    def __init__(self, config: ArithConfig | None = None, **overrides: Any) -> None:
        self.config = config if config is not None else ArithConfig.from_yaml(**overrides)
        self.default_params = dict(self.config.default_params)
        self.sampler_params = {k: dict(v) for k, v in self.config.sampler_params.items()}
        self._cache: dict[str, list[Doc]] = {}

    # -- generation ---------------------------------------------------------------
    def is_test_problem(self, numbers: tuple[int, ...]) -> bool:
        """The test decision: a hash of (seed, multiset) against ``test_fraction``."""
        h = _stable_hash(f"{self.config.seed}:{_problem_key(numbers)}")
        return (h % 1_000_000) < self.config.test_fraction * 1_000_000

    def split_of(self, numbers: tuple[int, ...]) -> str:
        """The split a problem (any order of its numbers) belongs to."""
        if self.is_test_problem(numbers):
            return "test"
        # A second hash, independent of the first: carving validation out leaves test untouched.
        h = _stable_hash(f"{self.config.seed}:validation:{_problem_key(numbers)}")
        return "validation" if (h % 1_000_000) < self.config.validation_fraction * 1_000_000 else "train"

    def problems(self, split: str) -> list[tuple[int, ...]]:
        """Every ordered problem of ``split``, in a fixed order."""
        _check_split(split)
        lo, hi = self.config.values
        out = []
        for n in range(self.config.terms[0], self.config.terms[1] + 1):
            for numbers in itertools.product(range(lo, hi + 1), repeat=n):
                if self.split_of(numbers) == split:
                    out.append(numbers)
        return out

    def make_doc(self, doc_id: str, numbers: tuple[int, ...], rng: random.Random) -> Doc:
        order = list(range(len(numbers)))
        rng.shuffle(order)
        return Doc(
            doc_id=doc_id,
            question=question_text(numbers),
            target=solution_text(numbers, order),
            meta={"numbers": list(numbers), "answer": str(sum(numbers))},
        )

    def _build(self, split: str) -> list[Doc]:
        cfg = self.config
        rng = random.Random(f"arith:{cfg.seed}:{split}")
        pool = self.problems(split)
        if not pool:
            raise ValueError(f"the {split} split is empty for terms={list(cfg.terms)}, values={list(cfg.values)}, "
                             f"validation_fraction={cfg.validation_fraction}")
        if split in ("test", "validation"):
            # Distinct problems, as many as asked for and the pool allows.
            chosen = rng.sample(pool, min(cfg.test_size, len(pool)))
        else:
            # Problems repeat, each time with an independently drawn solution order.
            chosen = [rng.choice(pool) for _ in range(cfg.train_size)]
        return [self.make_doc(f"{split}-{i}", nums, rng) for i, nums in enumerate(chosen)]

    # -- Task interface -----------------------------------------------------------
    def docs(self, split: str = "test", limit: int | None = None) -> list[Doc]:
        _check_split(split)
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if split not in self._cache:
            self._cache[split] = self._build(split)
        docs = self._cache[split]
        return docs if limit is None else docs[:limit]

    def prompt_text(self, doc: Doc) -> str:
        return doc.question

    def score(self, doc: Doc, completion: str) -> Score:
        extracted = extract_answer(completion)
        gold = doc.meta.get("answer") or extract_answer(doc.target)
        return Score(correct=numbers_equal(extracted, gold), extracted=extracted, detail={"gold": gold})

    def verify_solution(self, doc: Doc, completion: str) -> bool:
        """True if every step is right, not only the final answer: each line ``a+b=c`` adds
        correctly, starts from the previous result, the addends are exactly the problem's
        numbers, and ``#### N`` repeats the last result. (A teacher can reach the right total
        through wrong steps, e.g. ``9+5=14 / 14+5=19 / 19+5=24`` for 9 + 5 + 6 + 4.)"""
        lines = completion.strip().split("\n")
        steps = [re.fullmatch(r"(\d+)\+(\d+)=(\d+)", line) for line in lines[:-1]]
        if not steps or any(m is None for m in steps) or not re.fullmatch(r"#### (\d+)", lines[-1]):
            return False
        a, b, c = (list(x) for x in zip(*((int(m[1]), int(m[2]), int(m[3])) for m in steps)))
        chained = all(a[i] == c[i - 1] for i in range(1, len(steps)))
        added = all(x + y == z for x, y, z in zip(a, b, c))
        numbers = sorted(doc.meta["numbers"])
        return chained and added and sorted([a[0], *b]) == numbers and lines[-1] == f"#### {c[-1]}"

    def params_for(self, sampler: str) -> dict[str, Any]:
        """Task defaults merged with the sampler's own, keeping only what that sampler accepts.

        (``steps`` belongs to ``baseline``; threshold samplers would refuse it.)
        """
        from ..samplers import sampler_class
        from ..samplers.registry import sampler_params

        cls = sampler_class(sampler)
        valid = sampler_params(sampler)
        merged = {**self.default_params, **self.sampler_params.get(cls.name, {}), **self.sampler_params.get(sampler, {})}
        return {k: v for k, v in merged.items() if k in valid}

    def describe(self) -> dict[str, Any]:
        return asdict(self.config)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"arith has splits {', '.join(SPLITS)}, got {split!r}")
