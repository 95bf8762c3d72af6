"""The decoding loop reproduces the golden decodes captured before it was restructured.

Every sampler x cache mode x step path (C kernel / tensor ops) x early stop, alone and in a
mixed-length batch, on the shipped tiny-arith and a random Dream; plus traces and sampling at
temperature 0.7. Exact equality: tokens, NFE, forward tokens, trace values. See golden_cases.py.
"""

from __future__ import annotations

import pytest

import golden_cases as gc

GOLDEN = gc.load()
CASES = gc.cases()


def test_fixture_covers_every_case():
    assert sorted(GOLDEN) == sorted(gc.key(c) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[gc.key(c) for c in CASES])
def test_loop_reproduces_golden(case):
    assert gc.run_case(case) == GOLDEN[gc.key(case)]
