"""Report arithmetic on hand-made records: accuracy, Wilson interval, TPF, latency, speedups."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dpbench.report import summarize, wilson_interval, write_report


def make_run(root: Path, name: str, *, model="teacher", sampler="baseline", params=None, nfe, correct,
             gen_tokens=20, seconds=None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    params = {"gen_length": 64, "block_length": 16, "temperature": 0.0, "early_stop": False, **(params or {})}
    manifest = {"task": "arith", "split": "test", "model": model, "sampler": sampler, "params": params,
                "seed": 0, "batch_size": 4, "device": "cpu", "dtype": "float32"}
    (d / "manifest.json").write_text(json.dumps(manifest))
    seconds = seconds or [0.01 * x for x in nfe]
    with open(d / "samples.jsonl", "w") as fh:
        for i, (f, c, s) in enumerate(zip(nfe, correct, seconds)):
            row = {"doc_id": f"arith-{i}", "prompt_tokens": 12, "gen_tokens": gen_tokens, "nfe": f, "seconds": s,
                   "correct": c, "completion": "1+2=3\n#### 3", "extracted": "3"}
            fh.write(json.dumps(row) + "\n")
    return d


@pytest.fixture
def runs(tmp_path):
    return [
        make_run(tmp_path, "base", params={"steps": 64}, nfe=[64] * 10, correct=[True] * 8 + [False] * 2,
                 seconds=[0.5] * 10),
        make_run(tmp_path, "few", params={"steps": 16}, nfe=[16] * 4, correct=[True, True, False, False]),
        make_run(tmp_path, "dp", sampler="dparallel", params={"threshold": 0.5},
                 nfe=[8] * 5 + [16] * 5, correct=[True] * 7 + [False] * 3),
        make_run(tmp_path, "student", model="student", sampler="dparallel", params={"threshold": 0.5},
                 nfe=[4] * 5, correct=[False] * 5, gen_tokens=10),
    ]


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / 8.8415, abs=1e-4)
    assert wilson_interval(5, 5)[1] == 1.0
    assert all(x != x for x in wilson_interval(0, 0))


def test_summary_arithmetic(runs):
    t = summarize(runs).set_index("run")
    assert t.loc["base", "accuracy"] == pytest.approx(0.8)
    assert (t.loc["base", "acc_low"], t.loc["base", "acc_high"]) == pytest.approx(wilson_interval(8, 10))
    assert t.loc["base", "tpf"] == pytest.approx(20 / 64)
    assert t.loc["base", "tokens_per_s"] == pytest.approx(200 / 5.0)
    dp = t.loc["dp"]
    assert (dp["n"], dp["correct"], dp["accuracy"]) == (10, 7, pytest.approx(0.7))
    assert dp["nfe_mean"] == 12 and dp["nfe_median"] == 12
    assert dp["tpf"] == pytest.approx(200 / 120)
    assert dp["latency_mean"] == pytest.approx(0.12)
    assert dp["latency_p50"] == pytest.approx(0.12) and dp["latency_p95"] == pytest.approx(0.16)
    # Speedups against the full-step baseline of the same task and model, not the few-step one.
    assert dp["baseline"] == "base" and t.loc["few", "baseline"] == "base"
    assert dp["speedup_nfe"] == pytest.approx(64 / 12)
    assert dp["speedup_time"] == pytest.approx(0.5 / 0.12)
    assert t.loc["few", "speedup_nfe"] == pytest.approx(4.0)
    assert t.loc["base", "speedup_nfe"] == 1.0 and t.loc["base", "speedup_time"] == 1.0
    # The student has no baseline of its own: compared with the task's baseline on the teacher.
    assert t.loc["student", "baseline"] == "base" and t.loc["student", "speedup_nfe"] == pytest.approx(16.0)
    assert t.loc["student", "tpf"] == pytest.approx(10 / 4)
    assert t.loc["dp", "params"] == "threshold=0.5" and t.loc["base", "params"] == "steps=64"


def test_forced_baseline_and_unknown_baseline(runs):
    t = summarize(runs, baseline="few").set_index("run")
    assert t.loc["dp", "speedup_nfe"] == pytest.approx(16 / 12) and t.loc["base", "speedup_nfe"] == 0.25
    with pytest.raises(ValueError, match="'nope' is not among the runs"):
        summarize(runs, baseline="nope")


def test_no_baseline_gives_empty_speedup(runs):
    t = summarize(runs[2:3])
    assert t["baseline"].isna().all() and t["speedup_nfe"].isna().all()


def test_write_report_csv_and_markdown(runs, tmp_path):
    table, paths = write_report(runs, tmp_path / "out")
    csv = pd.read_csv(tmp_path / "out" / "report.csv")
    assert list(csv["run"]) == ["base", "few", "dp", "student"]
    assert csv.loc[2, "speedup_nfe"] == pytest.approx(64 / 12)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| dp | teacher | dparallel | threshold=0.5 | 64/16 | 10 | 70.0 [39.7, 89.2] | 12.00 |" in md
    first = md.split("\n\n")[1]  # the runs table (the AUP table follows)
    assert "5.33x" in first and first.count("\n| ") == 4 and first.startswith("| run |")
    assert "## AUP" in md and (tmp_path / "out" / "aup.csv").exists()


def test_not_a_run_dir(tmp_path):
    with pytest.raises(ValueError, match="no manifest.json"):
        summarize([tmp_path])


def test_cli_report_and_plot(runs, tmp_path):
    from typer.testing import CliRunner

    from dpbench.cli import app

    res = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "5.33x" in res.output and (tmp_path / "rep" / "report.md").exists()
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code != 0 and "no manifest.json" in res.output
    res = CliRunner().invoke(app, ["plot", *map(str, runs[:3]), "--out", str(tmp_path / "charts")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "charts" / "speedup.png").stat().st_size > 0


def test_paper_rows_beside_measured_ones():
    import pandas as pd

    from dpbench.report.table import paper_beside

    rows = paper_beside(pd.DataFrame({"task": ["gsm8k"]}), "llada")
    assert set(rows["task"]) == {"gsm8k"} and len(rows) == 6
    dp = rows[rows["method"] == "dParallel"].iloc[0]
    assert (dp["steps"], dp["accuracy_pct"]) == (30, 76.1)
    # A task the paper does not have (arith): no rows (the CLI says so in one line).
    assert paper_beside(pd.DataFrame({"task": ["arith"]})).empty


def test_every_non_default_param_is_visible(tmp_path):
    from dpbench.report import key_params

    assert key_params({"threshold": 0.5, "cache": "none", "temperature": 0.0}, "dparallel") == "threshold=0.5"
    shown = key_params({"threshold": 0.5, "cache": "dual", "dual_lookahead": 16, "step_kernel": False,
                        "gen_length": 64}, "dparallel")
    assert shown == "threshold=0.5 cache=dual dual_lookahead=16 step_kernel=False"
    # A sampler this install does not have: the common params' defaults still hide what is default.
    assert key_params({"threshold": 0.5, "cache": "prefix", "early_stop": False}, "not-here") == "threshold=0.5 cache=prefix"
    cached = make_run(tmp_path, "dual", sampler="dparallel", params={"threshold": 0.5, "cache": "dual"}, nfe=[8], correct=[True])
    plain = make_run(tmp_path, "none", sampler="dparallel", params={"threshold": 0.5, "cache": "none"}, nfe=[8], correct=[True])
    t = summarize([cached, plain]).set_index("run")
    assert t.loc["dual", "params"] != t.loc["none", "params"]


def test_paths_that_are_not_runs_are_skipped_with_one_note_each(runs, tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench.json").write_text("{}")
    chart = tmp_path / "speedup.png"
    chart.write_bytes(b"\x89PNG")
    t = summarize([runs[0], bench, chart, tmp_path / "missing", runs[2]])
    assert list(t["run"]) == ["base", "dp"]
    notes = t.attrs["notes"]
    assert len(notes) == 3 and "a `dpbench bench` output" in notes[0] and "no such file" in notes[1]
    assert notes[2] == "skipped 1 file(s), not run directories: speedup.png"


def test_latency_spread_and_speedup_interval(runs):
    t = summarize(runs).set_index("run")
    assert t.loc["dp", "latency_p5"] == pytest.approx(0.08)
    assert (t.loc["base", "speedup_time_p5"], t.loc["base", "speedup_time_p95"]) == (1.0, 1.0)
    dp = t.loc["dp"]
    assert dp["speedup_time_p5"] < dp["speedup_time"] < dp["speedup_time_p95"]
    assert summarize(runs).equals(summarize(runs))  # seeded: the same records give the same interval


def test_cli_paper_and_leaderboard_say_so_when_they_have_no_such_task(runs):
    from typer.testing import CliRunner

    from dpbench.cli import app

    res = CliRunner().invoke(app, ["report", *map(str, runs), "--paper", "--leaderboard", "--aup"])
    assert res.exit_code == 0, res.output
    assert "the dParallel paper reports none of these tasks (arith)" in res.output
    assert "the AUP leaderboard publishes none of these tasks (arith)" in res.output
    assert "AUP (accuracy under parallelism) per curve" in res.output and "GSM8K-CoT" not in res.output
