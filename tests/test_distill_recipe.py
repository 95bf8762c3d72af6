"""Distillation recipes: strict config validation, kill-safe resumable trajectories, distinct prompts."""

from __future__ import annotations

import importlib
import json

import pytest
from conftest import save_tiny_model
import torch

from dpbench.distill import DistillConfig, generate_trajectories, load_trajectories
from dpbench.models import load_model
from dpbench.tasks import Doc, Score, Task, register_task

traj_mod = importlib.import_module("dpbench.distill.trajectories")


@register_task("traj-fake")
class TrajFakeTask(Task):
    """10 training documents over 7 distinct questions; even-numbered documents count as correct."""

    default_params = {"gen_length": 8, "block_length": 4, "steps": 8}

    def docs(self, split="test", limit=None):
        docs = [Doc(f"{split}-{i}", f"{i % 7}+{i % 7}?", str(2 * (i % 7)), meta={"keep": i % 2 == 0})
                for i in range(10)]
        return docs[:limit] if limit is not None else docs

    def score(self, doc, completion):
        return Score(correct=doc.meta["keep"], extracted=completion[:4])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = save_tiny_model(tmp_path_factory.mktemp("teacher"), mlp_hidden_size=32, max_sequence_length=64,
                           rope_theta=10000.0)
    return load_model(path, device="cpu")


def _rows(d):
    return sorted((r["doc_id"], r["llm_response"]) for r in traj_mod._read_jsonl(d / "trajectories.jsonl")) + sorted(
        (r["doc_id"], r["llm_response"]) for r in traj_mod._read_jsonl(d / "rejected.jsonl"))


def test_trajectories_resume_after_a_kill(teacher, tmp_path, monkeypatch):
    """Killed after two batches and left with half a row on disk: the rerun decodes only what is
    missing (the cut row's document included) and ends with exactly the uninterrupted dataset."""
    lm, tok = teacher
    task = TrajFakeTask()
    generate_trajectories(lm, tok, task, tmp_path / "ref", batch_size=2, progress=False)
    ref = _rows(tmp_path / "ref")
    assert len(ref) == 10 and len(load_trajectories(tmp_path / "ref")) == 5

    real, decoded, kill = traj_mod.decode, [], [True]

    def dying(lm_, tok_, prompts, smp, generator=None):
        if kill[0] and len(decoded) == 4:
            raise KeyboardInterrupt("killed")
        decoded.extend(prompts)
        return real(lm_, tok_, prompts, smp, generator=generator)

    monkeypatch.setattr(traj_mod, "decode", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_trajectories(lm, tok, task, tmp_path / "run", batch_size=2, progress=False)
    assert len(_rows(tmp_path / "run")) == 4  # two whole batches reached the disk
    with open(tmp_path / "run" / "trajectories.jsonl", "a") as f:
        f.write('{"doc_id": "train-4", "question": "4+4?", "llm_re')  # a row cut by SIGKILL

    decoded.clear()
    kill[0] = False
    stats = generate_trajectories(lm, tok, task, tmp_path / "run", batch_size=2, progress=False)
    assert len(decoded) == 6  # documents 4..9 only: nothing finished is decoded again
    assert _rows(tmp_path / "run") == ref  # nothing lost, nothing twice, the same answers
    assert stats.kept == 5 and stats.rejected == 5
    for line in (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines():
        json.loads(line)  # the cut row is gone

    decoded.clear()
    generate_trajectories(lm, tok, task, tmp_path / "run", batch_size=2, progress=False)
    assert decoded == []  # a finished dataset is not decoded again
    with pytest.raises(ValueError, match="other settings.*early_stop"):
        generate_trajectories(lm, tok, task, tmp_path / "run", params={"early_stop": True}, progress=False)


def test_distinct_prompts_decoded_once(teacher, tmp_path, monkeypatch):
    lm, tok = teacher
    real, decoded = traj_mod.decode, []

    def counting(lm_, tok_, prompts, smp, generator=None):
        decoded.extend(prompts)
        return real(lm_, tok_, prompts, smp, generator=generator)

    monkeypatch.setattr(traj_mod, "decode", counting)
    stats = generate_trajectories(lm, tok, TrajFakeTask(), tmp_path / "d", batch_size=3, distinct=True,
                                  sampler="dparallel", params={"threshold": 0.3}, progress=False)
    assert len(decoded) == 7 == len(set(decoded)) and stats.total == 7
    row = load_trajectories(tmp_path / "d")[0]
    assert row["provenance"]["sampler"] == "dparallel" and row["provenance"]["params"]["threshold"] == 0.3


@pytest.mark.parametrize(
    "data, message",
    [
        ({"trajectories": {"distinct": "ture"}}, r"trajectories\.distinct expects a bool \(true/false\), got 'ture'"),
        ({"trajectories": {"distinct": 2}}, r"trajectories\.distinct expects a bool"),
        ({"trajectories": {"sampler": "dparalel"}}, r"unknown sampler 'dparalel'; did you mean 'dparallel'"),
        ({"trajectories": {"sampler": "dparallel", "params": {"steps": 4}}}, r"unknown parameter\(s\) steps"),
        ({"trajectories": {"limt": 3}}, r"unknown config key\(s\) trajectories\.limt; valid: trajectories\.split"),
        ({"train": {"max_steps": 2.5}}, r"train\.max_steps expects int, got 2\.5"),
        ({"train": {"max_steps": True}}, r"train\.max_steps expects int, got True"),
        ({"train": {"learning_rate": "fast"}}, r"train\.learning_rate expects float, got 'fast'"),
        ({"train": {"finetune": ["full"]}}, r"train\.finetune expects str"),
        ({"train": {"mask_ratio_range": [0.6, 0.2]}}, r"mask_ratio_range must be \[lo, hi\]"),
        ({"train": "full"}, r"train must be a mapping"),
        ({"threads": 0}, r"threads must be >= 1"),
    ],
)
def test_config_errors_are_clear(data, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig.from_dict(data)


def test_config_accepts_yaml_and_cli_spellings(tmp_path):
    cfg = DistillConfig.from_dict({"trajectories": {"distinct": "yes", "params": {"early_stop": True}},
                                   "train": {"learning_rate": "1e-4", "max_steps": 10.0}})
    assert cfg.trajectories.distinct is True and cfg.train.learning_rate == 1e-4 and cfg.train.max_steps == 10
    assert DistillConfig.from_dict({"trajectories": {"distinct": False}}).trajectories.distinct is False
    path = tmp_path / "c.yaml"
    cfg.save(path)
    assert DistillConfig.from_yaml(path) == cfg  # a saved config reads back as itself


def test_validation_during_training_selects_the_best_step(teacher, tmp_path, monkeypatch):
    """eval_every + select_best: every evaluation is logged, and final/ holds exactly the weights of
    the best one (highest accuracy, then fewest NFE); the SFT term is trained and logged too."""
    from safetensors.torch import load_file

    from dpbench.distill import train
    from dpbench.distill.monitor import Validator

    # Real evaluations, with scripted scores: step 3 is best (ties step 2 on accuracy, fewer NFE).
    scripted = iter([(0.5, 8.0), (0.7, 8.0), (0.7, 6.0), (0.6, 5.0)])
    real = Validator.evaluate

    def scored(self, student):
        rows = real(self, student)
        acc, nfe = next(scripted)
        return [{**rows[0], "accuracy": acc, "mean_nfe": nfe}]

    monkeypatch.setattr(Validator, "evaluate", scored)

    lm, tok = teacher
    task = TrajFakeTask()
    generate_trajectories(lm, tok, task, tmp_path / "traj", batch_size=5, progress=False)
    cfg = DistillConfig.from_dict({"train": {
        "finetune": "full", "block_size": 4, "max_steps": 4, "batch_size": 2, "grad_accum": 1, "learning_rate": 0.05,
        "save_every": 1, "keep_checkpoints": 4, "log_every": 1, "eval_every": 1, "eval_split": "train",
        "eval_limit": 6, "eval_params": [{"threshold": 0.9}], "select_best": True, "sft_weight": 0.5,
        "sft_data": "task"}})
    student, _ = load_model(str(lm.module.name_or_path), device="cpu")
    train(student, tok, load_trajectories(tmp_path / "traj"), tmp_path / "t", cfg, gen_length=8, progress=False,
          task=task)
    log = [json.loads(x) for x in (tmp_path / "t" / "log.jsonl").read_text().splitlines()]
    evals = [e for e in log if "eval" in e]
    assert [e["step"] for e in evals] == [1, 2, 3, 4] and all(e["eval"][0]["n"] == 6 for e in evals)
    assert all(e["sft"] > 0 for e in log if "ce" in e)
    assert [e["best"] for e in evals] == [True, True, True, False]
    best = 3
    state = json.loads((tmp_path / "t" / "final" / "train_state.json").read_text())
    assert state["selected"]["step"] == best
    final = load_file(str(tmp_path / "t" / "final" / "model.safetensors"))
    chosen = load_file(str(tmp_path / "t" / f"checkpoint-{best}" / "trainable.safetensors"))
    assert all(torch.equal(final[k], chosen[k]) for k in chosen)
    with pytest.raises(ValueError, match="select_best on the test split"):
        DistillConfig.from_dict({"train": {"eval_every": 1, "select_best": True, "eval_split": "test"}})


def test_recipe_extends(tmp_path):
    (tmp_path / "base.yaml").write_text("teacher: t\ntrain: {max_steps: 5, learning_rate: 1e-3}\n"
                                        "trajectories: {params: {early_stop: true, threshold: 0.5}}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain: {max_steps: 9}\ntrajectories: {params: {}}\n")
    cfg = DistillConfig.from_yaml(tmp_path / "child.yaml")
    assert cfg.teacher == "t" and cfg.train.max_steps == 9 and cfg.train.learning_rate == 1e-3
    assert cfg.trajectories.params == {}  # a params dict replaces the base's, it is not merged
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ValueError, match="extends itself"):
        DistillConfig.from_yaml(tmp_path / "loop.yaml")


@pytest.mark.parametrize("path", sorted((__import__("pathlib").Path(__file__).resolve().parents[1] / "configs" /
                                         "distill").rglob("*.yaml")), ids=lambda p: p.name)
def test_committed_recipes_load(path):
    DistillConfig.from_yaml(path)


def test_verify_filters_flawed_steps():
    from dpbench.distill.pipeline import verified
    from dpbench.tasks.arith import ArithTask

    task = ArithTask(train_size=50)
    docs = task.docs("train")
    rows = [{"doc_id": d.doc_id, "llm_response": d.target} for d in docs[:3]]
    wrong = f"{sum(docs[3].meta['numbers'])}+0=1\n#### {sum(docs[3].meta['numbers'])}"
    rows.append({"doc_id": docs[3].doc_id, "llm_response": wrong})
    assert [r["doc_id"] for r in verified(task, rows, "train")] == [d.doc_id for d in docs[:3]]
    with pytest.raises(ValueError, match="cannot check solutions"):
        verified(TrajFakeTask(), rows, "train")
    with pytest.raises(ValueError, match="not documents of arith/train"):
        verified(task, [{"doc_id": "x", "llm_response": ""}], "train")


def test_lr_schedules():
    from dpbench.distill.train import lr_factor

    tc = DistillConfig.from_dict({"train": {"warmup_steps": 4, "lr_decay": "cosine"}}).train
    assert lr_factor(0, tc, 104) == pytest.approx(0.2) and lr_factor(4, tc, 104) == pytest.approx(1.0)
    assert lr_factor(54, tc, 104) == pytest.approx(0.5) and lr_factor(104, tc, 104) == pytest.approx(0.0)
    lin = DistillConfig.from_dict({"train": {"lr_decay": "linear"}}).train
    assert lr_factor(25, lin, 100) == pytest.approx(0.75)
    paper = DistillConfig.from_dict({}).train
    assert [lr_factor(s, paper, 10) for s in (0, 9)] == [1.0, 1.0]  # the paper's constant rate
    with pytest.raises(ValueError, match="lr_decay must be one of none, cosine, linear, got 'cos'"):
        DistillConfig.from_dict({"train": {"lr_decay": "cos"}})


def test_task_options_reach_the_task_and_are_checked(tmp_path):
    """`task_options` builds the task the recipe names (validation_fraction 0: the pool the first student
    was distilled from, validation multisets included); a bad option is refused before any work."""
    from dpbench.distill import DistillConfig
    from dpbench.distill.trajectories import trajectory_docs
    from dpbench.preflight import PreflightError, check_distill
    from dpbench.tasks import get_task

    cfg = DistillConfig.from_dict({"task_options": {"validation_fraction": 0}})
    pool = trajectory_docs(get_task("arith", **cfg.task_options), "train", None, True)
    split = trajectory_docs(get_task("arith"), "train", None, True)
    assert len(pool) > len(split)  # the held-out validation multisets are back in the training pool
    assert {d.question for d in split} < {d.question for d in pool}
    with pytest.raises(PreflightError, match="unknown arith option"):
        check_distill("tiny-arith", "arith", DistillConfig.from_dict({"task_options": {"bogus": 1}}),
                      ("trajectories",), tmp_path / "d")
    with pytest.raises(ValueError, match="task_options"):
        DistillConfig.from_dict({"task_options": [1, 2]})
