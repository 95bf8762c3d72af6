"""MATH (Hendrycks et al.) in the Minerva 4-shot format, as lm-eval's ``minerva_math`` builds it.

Prompt: four worked examples (``Problem:\\n...\\n\\nSolution: ...``, read from
the installed lm-eval) then the problem; generation stops at ``Problem:``.

Scoring: the predicted answer is the text of "Final Answer: The final answer
is X. I hope it is correct." (the Minerva format the examples teach) or else
the last ``\\boxed{...}``; the reference is the last ``\\boxed{...}`` of the
solution. The two are compared symbolically with ``math-verify`` (Hugging Face's
checker, which lm-eval's ``minerva_math`` also uses for its ``math_verify`` metric):
both are parsed as LaTeX (sympy) and checked for equivalence, so ``\\frac{1}{2}`` =
``0.5``, ``x = 2`` = ``2``, ``\\sqrt{2}/2`` = ``\\frac{\\sqrt{2}}{2}``, ``10\\%`` = ``10``,
while ``\\frac{1}{2}`` != ``\\frac{1}{3}`` and ``(1,2)`` != ``(2,1)``. Only where math-verify
cannot parse one of them (free text, unusual notation) does dpbench fall back to its
normaliser (dollar signs, ``\\left``/``\\right``, ``\\text{}``, spaces, ``\\dfrac``, degree
marks, a leading ``x =``, unit words ...; string then numeric equality). The score's
detail says which one decided (``checked_by``).

Data: ``EleutherAI/hendrycks_math`` (all seven subjects) from the hub, or
``--data-file`` with the hub's fields ``problem`` and ``solution`` (``type``
and ``level`` are kept when present).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from . import register_task
from .base import Doc, Score
from .datafiles import lmeval_fewshot, load_rows
from .paper import PaperTask

SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
            "prealgebra", "precalculus")
STOP = ("Problem:",)
FIELDS = ("problem", "solution")
_FINAL = re.compile(r"final answer is\s*(.*?)\s*(?:\.\s*I hope it is correct|$)", re.IGNORECASE | re.DOTALL)
_UNITS = ("degrees", "degree", "units", "unit", "cm", "inches", "inch", "feet", "foot", "meters", "dollars",
          "cents", "mph", "hours", "minutes", "seconds", "square", "sq")


@lru_cache(maxsize=1)
def fewshot_examples() -> tuple[dict[str, str], ...]:
    """The four Minerva examples lm-eval uses for ``minerva_math``."""
    return tuple({"problem": e["problem"], "solution": e["solution"]} for e in lmeval_fewshot("minerva_math"))


def doc_to_text(problem: str) -> str:
    return f"Problem:\n{problem}\n\nSolution:"


def prompt_text(problem: str, shots: int = 4) -> str:
    """Few-shot prompt: lm-eval's layout (target delimiter " ", example delimiter a blank line)."""
    examples = fewshot_examples()[:shots]
    head = "".join(f"{doc_to_text(e['problem'])} {e['solution']}\n\n" for e in examples)
    return head + doc_to_text(problem)


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces, or None."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start : i - 1]
    m = list(re.finditer(r"\\boxed ([^\s$]+)", text))  # "\boxed 5"
    return m[-1].group(1) if m else None


def predicted_answer(completion: str) -> str | None:
    m = _FINAL.search(completion)
    if m and m.group(1).strip():
        return m.group(1).strip()
    return last_boxed(completion)


def normalize(ans: str) -> str:
    """A canonical string for a final answer (see the module docstring)."""
    s = ans.strip()
    inner = last_boxed(s)
    if inner is not None:
        s = inner
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:mbox|mathrm|textbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\$", "").replace("$", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "").replace("%", "")
    if "=" in s and "\\le" not in s and "\\ge" not in s:
        s = s.split("=")[-1]  # "x = 5" -> "5"
    for unit in _UNITS:
        s = re.sub(rf"(?<![a-zA-Z\\]){unit}(?:\^2|\^3)?\b", "", s)
    s = re.sub(r"\s+", "", s).rstrip(".")
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    if re.fullmatch(r"-?\d+,\d{3}(,\d{3})*", s):
        s = s.replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def _as_number(s: str) -> Fraction | None:
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", s)
    try:
        if m:
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) else value
        if re.fullmatch(r"-?\d+(\.\d+)?(/\d+)?", s):
            return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return None


def normalized_equal(pred: str | None, gold: str | None) -> bool:
    """The fallback: normalised strings equal, or equal as numbers."""
    if pred is None or gold is None:
        return False
    a, b = normalize(pred), normalize(gold)
    if a == b:
        return bool(a)
    na, nb = _as_number(a), _as_number(b)
    return na is not None and na == nb


def _timeout() -> int | None:
    # math-verify times out with signal.alarm, which only works in the main thread; elsewhere run without.
    import threading

    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(answer: str) -> list:
    """math-verify's parse of one final answer as LaTeX maths ([] when it cannot parse it: math-verify then
    keeps only the raw string, and comparing raw strings is the normaliser's job)."""
    from math_verify import parse

    text = answer.strip()
    while len(text) > 1 and text.startswith("$") and text.endswith("$"):
        text = text[1:-1].strip()
    if not text:
        return []
    try:
        parsed = parse(f"${text}$", parsing_timeout=_timeout())
    except Exception:  # noqa: BLE001  (a parser failure is "cannot parse": the normaliser decides)
        return []
    return parsed if any(not isinstance(x, str) for x in parsed) else []


def check_answer(pred: str | None, gold: str | None) -> tuple[bool, str]:
    """``(equivalent, checked_by)``: math-verify where it parses both answers, else the normaliser."""
    if pred is None or gold is None:
        return False, "no answer" if pred is None else "no reference"
    p, g = _parse(pred), _parse(gold)
    if p and g:
        from math_verify import verify

        try:
            return bool(verify(g, p, timeout_seconds=_timeout())), "math_verify"
        except Exception:  # noqa: BLE001
            pass
    return normalized_equal(pred, gold), "normalizer"


def answers_equal(pred: str | None, gold: str | None) -> bool:
    """Whether two final answers are the same maths (`check_answer` without the method)."""
    return check_answer(pred, gold)[0]


def score_text(completion: str, solution: str) -> dict[str, Any]:
    """Score one completion against a MATH reference solution (used by lm-eval too)."""
    pred, gold = predicted_answer(completion), last_boxed(solution)
    correct, how = check_answer(pred, gold)
    return {"correct": correct, "extracted": pred, "gold": gold, "checked_by": how}


@register_task("minerva_math")
class MathTask(PaperTask):
    """MATH test set (5000 competition problems, 7 subjects), Minerva 4-shot prompt."""

    stop = STOP
    lmeval_task = "dpbench_minerva_math"
    shots = 4

    def load(self, split: str) -> list[Doc]:
        if self.data_file is not None:
            rows = load_rows("minerva_math", data_file=self.data_file, hub_path="EleutherAI/hendrycks_math",
                             hub_name=None, split=split, fields=FIELDS)
            ids = [str(i) for i in range(len(rows))]
        else:
            rows, ids = [], []
            for subject in SUBJECTS:
                part = load_rows("minerva_math", data_file=None, hub_path="EleutherAI/hendrycks_math",
                                 hub_name=subject, split=split, fields=FIELDS)
                rows += part
                ids += [f"{subject}-{i}" for i in range(len(part))]
        return [Doc(doc_id=i, question=r["problem"], target=r["solution"],
                    meta={k: r[k] for k in ("type", "level") if k in r}) for i, r in zip(ids, rows)]

    def prompt_text(self, doc: Doc) -> str:
        return prompt_text(doc.question, self.shots)

    def score(self, doc: Doc, completion: str) -> Score:
        s = score_text(self.cut(completion), doc.target)
        return Score(correct=s["correct"], extracted=s["extracted"], detail={"gold": s["gold"], "checked_by": s["checked_by"]})


__all__ = ["MathTask", "answers_equal", "check_answer", "fewshot_examples", "last_boxed", "normalize", "normalized_equal",
           "prompt_text", "score_text"]
