"""Long commands check every argument before the first forward and report every problem at once."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dpbench.cli import app


@pytest.fixture
def no_work(monkeypatch):
    """Counts every model load and every decode; a failing pre-flight must leave both at zero."""
    import dpbench.models
    import dpbench.models.loading as loading
    import dpbench.records as records
    from dpbench.samplers.base import BlockSampler

    calls = []

    def refuse(what):
        def f(*a, **k):
            calls.append(what)
            raise AssertionError(f"{what} called during a failing pre-flight")
        return f

    # dpbench.models first: its lazy lookup would otherwise cache the patched loader for good.
    monkeypatch.setattr(dpbench.models, "load_model", refuse("load_model"), raising=False)
    monkeypatch.setattr(loading, "load_model", refuse("load_model"))
    monkeypatch.setattr(records, "decode_batch", refuse("decode_batch"))
    monkeypatch.setattr(BlockSampler, "generate", refuse("generate"))
    return calls


def _text(res) -> str:
    return " ".join(res.output.replace("│", " ").split())  # rich wraps the message in a box


def test_readme_sweep_with_a_missing_student_fails_at_once(no_work, tmp_path):
    student = tmp_path / "runs" / "tiny-student" / "model"  # the README's path, not made yet (cwd-independent)
    res = CliRunner().invoke(app, [
        "sweep", "arith", "-m", "teacher=tiny-arith", "-m", f"student={student}", "--sampler", "dparallel,dparalel",
        "--param", "threshold=0.1,0.3", "-p", "dparallel:thresold=1", "--out", str(tmp_path / "s"), "--batch-size", "0"])
    text = _text(res)
    assert res.exit_code != 0 and no_work == []
    for part in ("problems found before any work started", "model student=", "does not exist", "did you mean 'dparallel'",
                 "unknown parameter(s) thresold", "batch-size must be >= 1"):
        assert part in text, part
    assert text.count("did you mean 'dparallel'") == 1  # one bad name in a grid is reported once
    assert not (tmp_path / "s").exists()


def test_sweep_grid_key_for_a_sampler_not_swept(no_work, tmp_path):
    res = CliRunner().invoke(app, ["sweep", "arith", "-m", "tiny-arith", "-p", "confidence:threshold=0.9",
                                   "--out", str(tmp_path / "s")])
    assert res.exit_code != 0 and "which is not swept" in _text(res) and no_work == []


def test_run_reports_model_task_and_sampler_problems_together(no_work, tmp_path):
    res = CliRunner().invoke(app, ["run", "arth", "--sampler", "dparallel", "-m", str(tmp_path / "nope"),
                                   "-p", "threshold=0.5,gen_length=60", "--out", str(tmp_path / "r")])
    text = _text(res)
    assert res.exit_code != 0 and no_work == []
    assert "3 problems" in text and "does not exist" in text and "did you mean 'arith'" in text
    # gen_length 60 is checked against the task's block_length 16 only once the task is known:
    res = CliRunner().invoke(app, ["run", "arith", "--sampler", "dparallel", "-p", "gen_length=60", "--limit", "-1",
                                   "--out", str(tmp_path / "r")])
    text = _text(res)
    assert res.exit_code != 0 and "divide gen_length (60)" in text and "limit must be >= 0" in text and no_work == []


def test_bench_checks_every_sampler_and_cache(no_work, tmp_path):
    res = CliRunner().invoke(app, ["bench", "--sampler", "dparallel,basline", "--cache", "none,dual+x,prefix",
                                   "-p", "threshold=0.5", "--samples", "100000", "--out", str(tmp_path / "b")])
    text = _text(res)
    assert res.exit_code != 0 and no_work == []
    for part in ("3 problems", "did you mean 'baseline'", "dual+N", "has only 500 test documents, 100000 needed"):
        assert part in text, part


def test_distill_checks_teacher_task_params_and_stage_inputs(no_work, tmp_path):
    res = CliRunner().invoke(app, ["distill", "--teacher", str(tmp_path / "teacher"), "--task", "arith",
                                   "--stage", "train", "--out", str(tmp_path / "d")])
    text = _text(res)
    assert res.exit_code != 0 and no_work == []
    assert "teacher" in text and "does not exist" in text and "--stage train needs the trajectories" in text
    res = CliRunner().invoke(app, ["distill", "--teacher", "tiny-arith", "--task", "arith", "--stage", "merge",
                                   "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "--stage merge needs a finished train stage" in _text(res) and no_work == []


def test_distill_checks_the_trajectory_samplers_params(no_work, tmp_path):
    """The teacher's decoding parameters are checked against the sampler the recipe names (ablation a7
    recipe decodes with dparallel + threshold), not against baseline."""
    from dpbench.distill import DistillConfig
    from dpbench.preflight import PreflightError, check_distill

    shipped = DistillConfig.from_yaml("configs/distill/ablations/a7-dparallel-dual-traj.yaml")
    assert shipped.trajectories.sampler == "dparallel" and "threshold" in shipped.trajectories.params
    check_distill("tiny-arith", "arith", shipped, ("trajectories",), tmp_path / "d")  # no error
    traj = shipped.to_dict()["trajectories"]
    with pytest.raises(ValueError, match="unknown parameter.*threshold for sampler 'baseline'"):
        DistillConfig.from_dict({**shipped.to_dict(), "trajectories": {**traj, "sampler": "baseline"}})
    wrong = DistillConfig.from_dict({**shipped.to_dict(), "trajectories": {**traj, "params": {"threshold": -0.5}}})
    with pytest.raises(PreflightError, match="teacher's dparallel"):
        check_distill("tiny-arith", "arith", wrong, ("trajectories",), tmp_path / "d")
    assert no_work == []


def test_offline_hub_model_without_a_cached_copy(monkeypatch, tmp_path):
    from dpbench.preflight import check_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="offline here"):
        check_model("someorg/some-model")
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        check_model(str(tmp_path / "model"))
    check_model("tiny-arith")  # the shipped preset passes


def test_demo_skips_what_this_install_lacks(tmp_path):
    from dpbench.demo import DEFAULT_OUT, RUNS, plan

    assert DEFAULT_OUT == "runs/demo"  # never the committed results/demo unless asked
    assert {r[2] for r in RUNS} >= {"baseline", "confidence", "dparallel", "multiblock"}
    keep, skipped = plan((("a", "tiny-arith", "dparallel", {}), ("b", "tiny-arith", "no-such-sampler", {}),
                          ("c", str(tmp_path / "none"), "dparallel", {})))
    assert [r[0] for r in keep] == ["a"]
    assert skipped == ["b (sampler no-such-sampler not registered in this install)",
                       f"c (model {tmp_path / 'none'} not installed)"]


def test_preflight_knows_the_runners_engines():
    from dpbench.preflight import ENGINES
    from dpbench.runner import ENGINES as RUNNER

    assert ENGINES == RUNNER
