"""The built-in `arith` task and GSM8K-style answer extraction."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import fields

import pytest

from dpbench.models import build_char_tokenizer
from dpbench.tasks import get_task
from dpbench.tasks.arith import YAML_PATH, ArithConfig, ArithTask
from dpbench.tasks.extract import extract_answer, normalize_number, numbers_equal


@pytest.fixture(scope="module")
def task() -> ArithTask:
    return ArithTask(train_size=3000)


def test_registered_and_reads_yaml():
    t = get_task("arith")
    assert isinstance(t, ArithTask)
    assert t.default_params == {"gen_length": 64, "block_length": 16, "steps": 64}
    # The dataclass defaults mirror the YAML, so an install without tasks/ behaves the same.
    assert YAML_PATH.is_file()
    from_yaml, builtin = ArithConfig.from_yaml(), ArithConfig()
    for f in fields(ArithConfig):
        assert getattr(from_yaml, f.name) == getattr(builtin, f.name), f.name


def test_generator_is_deterministic(task):
    again = ArithTask(train_size=3000)
    assert [(d.doc_id, d.question, d.target) for d in task.docs("test")] == [
        (d.doc_id, d.question, d.target) for d in again.docs("test")
    ]
    assert [d.target for d in task.docs("train")[:500]] == [d.target for d in again.docs("train")[:500]]
    other = ArithTask(seed=7, train_size=3000)
    assert [d.question for d in other.docs("test")] != [d.question for d in task.docs("test")]


def test_splits_disjoint_by_multiset(task):
    def key(d):
        return tuple(sorted(d.meta["numbers"]))

    test_docs = task.docs("test")
    assert len(test_docs) == 500
    assert len({d.question for d in test_docs}) == 500  # distinct problems
    train_keys = {key(d) for d in task.docs("train")}
    assert train_keys.isdisjoint({key(d) for d in test_docs})
    # The same holds for the full problem pools, not only the sampled documents.
    pool_train = {tuple(sorted(p)) for p in task.problems("train")}
    pool_test = {tuple(sorted(p)) for p in task.problems("test")}
    assert pool_train.isdisjoint(pool_test) and pool_test
    # Validation: distinct problems whose multisets occur in neither train nor test.
    val = task.docs("validation")
    assert len(val) == 500 and len({d.question for d in val}) == 500
    pool_val = {tuple(sorted(p)) for p in task.problems("validation")}
    assert {key(d) for d in val} <= pool_val
    assert pool_val.isdisjoint(pool_train) and pool_val.isdisjoint(pool_test)
    assert train_keys.isdisjoint({key(d) for d in val})
    # Every problem of the space is in exactly one pool.
    lo, hi = task.config.values
    n_all = sum((hi - lo + 1) ** n for n in range(task.config.terms[0], task.config.terms[1] + 1))
    assert sum(len(task.problems(s)) for s in ("train", "validation", "test")) == n_all


def test_test_split_unchanged():
    """The 500 test problems are the yardstick of every committed result: carving out validation
    (or any later change) must leave them exactly as they were (checksum of the released split)."""
    docs = ArithTask().docs("test")
    digest = hashlib.sha256(json.dumps([(d.doc_id, d.question, d.target) for d in docs]).encode()).hexdigest()
    assert digest == "89c6348e20eac6b8b9ce92c914fb8edae91add8142d8db0493a358e9b7e66c9d"
    assert ArithTask(validation_fraction=0.4).docs("test")[0].question == docs[0].question


def test_validation_fraction_zero_is_the_old_training_pool(task):
    """validation_fraction 0: train = every non-test multiset (the shipped teacher's pretraining pool)."""
    old = ArithTask(validation_fraction=0.0, train_size=10)
    assert set(old.problems("train")) == set(task.problems("train")) | set(task.problems("validation"))
    with pytest.raises(ValueError, match="validation split is empty"):
        old.docs("validation")
    with pytest.raises(ValueError, match="validation_fraction"):
        ArithTask(validation_fraction=1.0)


def test_solutions_are_correct_and_varied(task):
    tok = build_char_tokenizer()
    orders: dict[str, set[str]] = {}
    for d in task.docs("train")[:2000] + task.docs("test"):
        nums = d.meta["numbers"]
        assert 3 <= len(nums) <= 4 and all(1 <= n <= 9 for n in nums)
        lines = d.target.split("\n")
        acc = None
        for line in lines[:-1]:
            a, b, c = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", line).groups())
            assert a + b == c and (acc is None or a == acc)
            acc = c
        assert lines[-1] == f"#### {sum(nums)}" and acc == sum(nums)
        assert extract_answer(d.target) == str(sum(nums))
        # Answers are well shorter than gen_length (64) so EOS blocks exist.
        assert 15 <= len(tok(d.target, add_special_tokens=False).input_ids) <= 32
        orders.setdefault(d.question, set()).add(d.target)
    # Several valid solutions per problem appear in the training data.
    assert max(len(v) for v in orders.values()) >= 3


def test_score(task):
    d = task.docs("test")[0]
    total = sum(d.meta["numbers"])
    assert task.score(d, d.target).correct
    assert task.score(d, f"junk\n#### {total}\n").correct
    s = task.score(d, f"#### {total + 1}")
    assert not s.correct and s.extracted == str(total + 1)
    assert not task.score(d, "").correct


def test_params_for_keeps_only_what_a_sampler_takes(task):
    assert task.params_for("baseline") == {"gen_length": 64, "block_length": 16, "steps": 64}
    assert task.params_for("dparallel") == {"gen_length": 64, "block_length": 16, "threshold": 0.5}
    assert task.params_for("confidence")["threshold"] == 0.9


def test_errors(task):
    with pytest.raises(ValueError, match="splits"):
        task.docs("dev")
    with pytest.raises(ValueError, match="unknown arith option"):
        ArithTask(bogus=1)
    with pytest.raises(ValueError, match="terms"):
        ArithTask(terms=[1, 2])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3+4=7\n#### 7", "7"),
        ("#### 1,234", "1234"),
        ("#### $1,234,567.", "1234567"),
        ("#### -12", "-12"),
        ("#### \u22125", "-5"),  # Unicode minus
        ("#### 42 apples.\nThen more text 99", "42"),  # trailing text
        ("#### 3.5.", "3.5"),
        ("#### 18\n#### 19", "19"),  # several markers: the last wins
        ("#### 18\n####", "18"),  # a marker with no number is skipped
        ("####18", "18"),
        ("so \\boxed{12} is it", "12"),
        ("\\boxed{\\frac{1}{2}}", "1/2"),
        ("#### 5 and \\boxed{6}", "5"),  # #### preferred over \boxed
        ("the answer is 7", None),  # strict: no marker, no answer
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_fallback_and_equality():
    assert extract_answer("the answer is 1,200 or 7.", fallback_last_number=True) == "7"
    assert numbers_equal("18.0", "18") and numbers_equal("36/2", "18") and numbers_equal("1,000", "1000")
    assert not numbers_equal("-5", "5") and not numbers_equal(None, "5") and not numbers_equal("abc", "abc")
    assert normalize_number(" $1,234.50. ") == "1234.50"
    assert normalize_number("-") is None


def test_verify_solution_checks_every_step(task):
    doc = next(d for d in task.docs("train") if sorted(d.meta["numbers"]) == [4, 5, 6, 9])
    assert all(task.verify_solution(d, d.target) for d in task.docs("train")[:500] + task.docs("test"))
    # The right total through wrong steps (a number used twice, another never): rejected.
    assert task.score(doc, "9+5=14\n14+5=19\n19+5=24\n#### 24").correct
    assert not task.verify_solution(doc, "9+5=14\n14+5=19\n19+5=24\n#### 24")
    assert not task.verify_solution(doc, "9+5=14\n14+6=21\n21+4=24\n#### 24")  # 14+6 is not 21
    assert not task.verify_solution(doc, "9+5=14\n15+6=21\n21+4=25\n#### 25")  # not chained
    assert not task.verify_solution(doc, "9+5=14\n14+6=20\n20+4=24\n#### 25")  # answer is not the result
    assert not task.verify_solution(doc, "#### 24") and not task.verify_solution(doc, "")
