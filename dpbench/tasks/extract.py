"""Final-answer extraction for GSM8K-style completions, shared by `arith` and `gsm8k`.

The answer is read from the *last* ``#### N`` marker in the completion (GSM8K's
format). Taking the last one, not the first, means a completion that restates
or corrects itself is scored on the answer it ends with; this is also the rule
for ``\\boxed{N}``, the fallback when no ``####`` is present. (lm-eval's gsm8k
"strict-match" filter takes the first ``####``; the two differ only when a
completion contains several.)

Numbers are normalised before comparison: thousands separators, currency
signs, a trailing full stop and a Unicode minus are removed or fixed, so
``#### $1,234.`` reads as ``1234``. `numbers_equal` compares numerically, so
``18``, ``18.0`` and ``36/2`` are one answer.
"""

from __future__ import annotations

import re
from fractions import Fraction

# A number as written in answers: optional sign, digits with optional thousands
# commas, optional decimals, or a simple fraction a/b.
_NUMBER = r"[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:\s*/\s*\d+)?"
_HASH = re.compile(r"####\s*(" + _NUMBER + r")")
_BOXED = re.compile(r"\\boxed\s*\{")
_ANY_NUMBER = re.compile(r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def normalize_number(text: str) -> str | None:
    """Canonical text of a written number (``" $1,234.50."`` -> ``"1234.50"``); None if it is not one."""
    s = text.strip().replace("\u2212", "-").replace("$", "").replace(",", "").replace(" ", "")
    s = s.rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    if not s or _to_fraction(s) is None:
        return None
    return s


def _to_fraction(s: str) -> Fraction | None:
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            return Fraction(num) / Fraction(den)
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_equal(a: str | None, b: str | None) -> bool:
    """True when both strings are numbers of equal value (``"18.0"`` == ``"18"`` == ``"36/2"``)."""
    if a is None or b is None:
        return False
    na, nb = normalize_number(a), normalize_number(b)
    if na is None or nb is None:
        return False
    return _to_fraction(na) == _to_fraction(nb)


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}``, braces balanced (``\\boxed{\\frac{1}{2}}`` works)."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def extract_answer(completion: str, *, fallback_last_number: bool = False) -> str | None:
    """The final answer of ``completion`` as a normalised number string, or None.

    Order of preference: the last ``#### N``; else the last ``\\boxed{N}``; else,
    only if ``fallback_last_number``, the last number anywhere (lm-eval's
    "flexible-extract"). A marker followed by no number is skipped, so the
    answer comes from the last marker that carries one.
    """
    text = completion.replace("\u2212", "-")
    for m in reversed(list(_HASH.finditer(text))):
        value = normalize_number(m.group(1))
        if value is not None:
            return value
    for content in reversed(_boxed_contents(text)):
        value = normalize_number(content)
        if value is None:
            frac = re.fullmatch(r"\s*\\d?frac\{(-?\d+)\}\{(\d+)\}\s*", content)
            value = normalize_number(f"{frac.group(1)}/{frac.group(2)}") if frac else None
        if value is not None:
            return value
    if fallback_last_number:
        numbers = _ANY_NUMBER.findall(text)
        for raw in reversed(numbers):
            value = normalize_number(raw)
            if value is not None:
                return value
    return None


__all__ = ["extract_answer", "normalize_number", "numbers_equal"]
