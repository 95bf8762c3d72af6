"""`dpbench compare`: two runs of the same documents, sample by sample."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dpbench.cli import app
from dpbench.report.compare import compare_runs


def write_run(path, records):
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"task": "arith", "model": "m", "sampler": "dparallel", "params": {}}))
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rec(doc, text, extracted, correct, nfe, seconds):
    return {"doc_id": doc, "completion": text, "extracted": extracted, "correct": correct, "nfe": nfe,
            "seconds": seconds, "gen_tokens": 4}


@pytest.fixture
def runs(tmp_path):
    a = write_run(tmp_path / "none", [
        rec("d0", "1+1=2 #### 2", "2", True, 10, 1.0), rec("d1", "x #### 5", "5", False, 12, 1.0),
        rec("d2", "#### 7", "7", True, 8, 1.0), rec("d3", "?", None, False, 9, 1.0),
    ])
    b = write_run(tmp_path / "dual", [
        rec("d0", "1+1=2 #### 2", "2", True, 10, 0.5), rec("d1", "y #### 6", "6", True, 11, 0.5),
        rec("d2", "7 #### 7", "7", True, 8, 0.5), rec("d3", "?", None, False, 9, 0.5), rec("d9", "", None, False, 1, 0.1),
    ])
    return a, b


def test_compare_counts_agreement_flips_and_time(runs):
    c = compare_runs(*runs)
    assert (c["n"], c["only_a"], c["only_b"]) == (4, 0, 1)  # d9 is only in B and is left out
    assert c["same_completion"] == 0.5 and c["same_answer"] == 0.75  # d2: other text, same answer; d3: both None
    assert c["same_nfe"] == 0.75 and c["flips"] == (0, 1)
    assert (c["accuracy_a"], c["accuracy_b"]) == (0.5, 0.75)
    assert c["speedup_time"] == pytest.approx(2.0) and c["differ"] == ["d1", "d2"]


def test_compare_cli_and_errors(runs, tmp_path):
    res = CliRunner().invoke(app, ["compare", str(runs[0]), str(runs[1])])
    assert res.exit_code == 0, res.output
    assert "same completion 50.0%, same answer 75.0%, same NFE 75.0%" in res.output
    assert "(1 only in dual)" not in res.output and "0 only in none, 1 only in dual" in res.output
    assert "dual 2.00x faster" in res.output
    res = CliRunner().invoke(app, ["compare", str(runs[1]), str(runs[0])])  # the other way round
    assert "none 2.00x slower" in res.output
    res = CliRunner().invoke(app, ["compare", str(runs[0]), str(tmp_path / "missing")])
    text = " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box
    assert res.exit_code != 0 and "is not a run directory: it has no manifest.json" in text
    other = write_run(tmp_path / "other", [rec("z", "", None, False, 1, 1.0)])
    with pytest.raises(ValueError, match="share no documents"):
        compare_runs(runs[0], other)
