"""`dpbench distill` end to end on a tiny random model: trajectories -> train -> merge -> reload -> generate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import save_tiny_model
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from dpbench.distill import (
    DistillConfig,
    check_lora_targets,
    import_dataset,
    load_trajectories,
    make_student,
    run_distill,
    train,
)
from dpbench.models import load_model
from dpbench.samplers import get_sampler
from dpbench.tasks import Doc, Score, Task, register_task


@register_task("distill-fake")
class DistillFakeTask(Task):
    """Even-numbered documents are 'answered correctly' whatever the model says: tests the filter."""

    default_params = {"gen_length": 8, "block_length": 4, "steps": 8}

    def docs(self, split="test", limit=None):
        n = 6 if split == "train" else 4
        docs = [Doc(f"{split}-{i}", f"{i}+{i}?", str(2 * i), meta={"keep": i % 2 == 0}) for i in range(n)]
        return docs[:limit] if limit is not None else docs

    def score(self, doc, completion):
        return Score(correct=doc.meta["keep"], extracted=completion[:4])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> str:
    return save_tiny_model(tmp_path_factory.mktemp("teacher"), n_layers=2, rope_theta=10000.0)


def tiny_config(**train) -> DistillConfig:
    return DistillConfig.from_dict({
        "trajectories": {"batch_size": 4},
        "train": {"block_size": 4, "max_steps": 3, "batch_size": 2, "grad_accum": 2, "save_every": 2,
                  "learning_rate": 1e-3, "log_every": 1, **train},
        "lora": {"r": 4, "alpha": 8},
    })


def test_lora_target_refusal(teacher):
    lm, _ = load_model(teacher, device="cpu")
    # The reference LLaDA config's names: three of them do not exist in LLaDA.
    with pytest.raises(ValueError, match=r"o_proj, gate_proj, down_proj match no layer.*attn_out"):
        check_lora_targets(lm.module, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    with pytest.raises(ValueError, match="ff_prj"):
        make_student(lm.module, DistillConfig.from_dict({"lora": {"target_modules": ["q_proj", "ff_prj"]}}))
    # LLaDA's real names: every projection of every block gets an adapter.
    student = make_student(lm.module, tiny_config())
    adapted = {n.rsplit(".", 1)[0] for n, _ in student.named_parameters() if "lora_A" in n}
    for i in range(2):
        for proj in ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"):
            assert any(f"blocks.{i}.{proj}.lora_A" in n for n in adapted), (i, proj)
    assert all(not p.requires_grad for n, p in student.named_parameters() if "lora_" not in n)


def test_micro_end_to_end(teacher, tmp_path):
    out = tmp_path / "student"
    report = run_distill(teacher, "distill-fake", out, tiny_config(), device="cpu", progress=False)
    assert report["trajectories"]["kept"] == 3 and report["trajectories"]["rejected"] == 3
    rows = load_trajectories(out / "trajectories")
    assert [r["doc_id"] for r in rows] == ["train-0", "train-2", "train-4"]
    for r in rows:
        assert {"question", "llm_response", "prompt", "provenance"} <= set(r)
        assert r["prompt"].startswith("<|user|>") and r["provenance"]["sampler"] == "baseline"
        assert r["provenance"]["params"]["steps"] == 8

    log = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3]
    assert all(e["ce"] > 0 and e["entropy"] >= 0 for e in log)
    assert (out / "train" / "checkpoint-2" / "trainable.safetensors").exists()
    assert (out / "train" / "final" / "adapter_config.json").exists()

    # The merged checkpoint loads without peft and decodes.
    student, tok = load_model(str(out / "model"), device="cpu")
    card = (out / "model" / "README.md").read_text()
    assert teacher in card and "2.0 * (H(masked)" in card and "3 steps" in card
    ids = tok(tok.apply_chat_template([{"role": "user", "content": "1+1?"}], add_generation_prompt=True,
                                      tokenize=False), return_tensors="pt", add_special_tokens=False).input_ids
    res = get_sampler("dparallel", gen_length=8, block_length=4, threshold=0.5).generate(student, ids)
    assert res.sequences.shape == (1, ids.shape[1] + 8) and 2 <= int(res.nfe[0]) <= 8

    # Merged weights compute what teacher + adapter computes, and differ from the teacher.
    from peft import PeftModel

    base, _ = load_model(teacher, device="cpu")
    x = torch.cat([ids, torch.full((1, 8), tok.mask_token_id)], dim=1)
    with torch.no_grad():
        t_logits = base.logits(x)
        adapted = PeftModel.from_pretrained(base.module, str(out / "train" / "final")).eval()
        want = adapted(x).logits
    assert torch.allclose(student.logits(x), want, atol=1e-4)
    assert not torch.allclose(student.logits(x), t_logits, atol=1e-3)

    # Rerunning resumes: nothing is decoded or trained again.
    again = run_distill(teacher, "distill-fake", out, tiny_config(), stages=("trajectories", "train"), device="cpu",
                        progress=False)
    assert again["trajectories"]["kept"] == 3 and again["train"].get("skipped")


def test_full_finetune_resume_matches_uninterrupted_run(teacher, tmp_path):
    from dpbench.distill.trajectories import generate_trajectories

    cfg = tiny_config(finetune="full")
    task = DistillFakeTask()
    lm, tok = load_model(teacher, device="cpu")
    generate_trajectories(lm, tok, task, tmp_path / "traj", batch_size=6, progress=False)
    rows = load_trajectories(tmp_path / "traj")
    train(lm, tok, rows, tmp_path / "a", cfg, gen_length=8, progress=False)

    # Pretend a run died after step 2: only its checkpoint is left; resume it with a fresh model.
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    lm_b, _ = load_model(teacher, device="cpu")
    result = train(lm_b, tok, rows, tmp_path / "b", cfg, gen_length=8, progress=False)
    assert result.steps == 3
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    teacher_w = load_file(str(Path(teacher) / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert any(not torch.equal(wa[k], teacher_w[k]) for k in wa)


def test_import_paper_dataset(tmp_path):
    src = tmp_path / "paper.jsonl"
    src.write_text("\n".join(json.dumps({"question": f"<|user|>q{i}\n<|assistant|>", "llm_response": f"a{i}"})
                             for i in range(3)) + "\n")
    stats = import_dataset(src, tmp_path / "traj")
    assert stats.kept == 3 and stats.rejected == 0
    rows = load_trajectories(tmp_path / "traj")
    assert rows[1]["prompt"] == rows[1]["question"] and rows[1]["llm_response"] == "a1"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match="llm_response"):
        import_dataset(bad, tmp_path / "traj2")


def test_cli_distill_stage_and_sweep(teacher, tmp_path):
    from dpbench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["distill", "--teacher", teacher, "--task", "distill-fake", "--out", str(tmp_path / "d"),
                              "--stage", "trajectories", "--limit", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "kept 1 / 2" in res.output
    bad = runner.invoke(app, ["distill", "--teacher", teacher, "--task", "distill-fake", "--out", str(tmp_path / "e"),
                              "--entropy-weight", "-1"])
    assert bad.exit_code != 0 and "entropy_weight" in bad.output

    res = runner.invoke(app, ["sweep", "distill-fake", "-m", f"teach={teacher}", "--sampler", "dparallel",
                              "--param", "threshold=0.2,0.8", "--limit", "2", "--out", str(tmp_path / "s"),
                              "--device", "cpu", "--split", "train"])
    assert res.exit_code == 0, res.output
    manifests = list((tmp_path / "s" / "runs").glob("*/manifest.json"))
    assert len(manifests) == 3 and all(json.loads(m.read_text())["split"] == "train" for m in manifests)
    import pandas as pd

    df = pd.read_csv(tmp_path / "s" / "sweep.csv")
    assert list(df["sampler"]) == ["baseline", "dparallel", "dparallel"]
    assert df.loc[0, "speedup"] == pytest.approx(1.0) and (df["nfe_mean"] <= 8).all()
    assert list(df["model"]) == ["teach"] * 3 and list(df["threshold"].fillna(-1)) == [-1, 0.2, 0.8]
    assert (tmp_path / "s" / "tradeoff.png").stat().st_size > 1000


def test_shipped_student_preset():
    import os

    from dpbench.models.loading import PRESETS
    from dpbench.samplers import build_sampler
    from dpbench.tasks import get_task

    if not os.path.isdir(PRESETS["tiny-arith-dparallel"].source):
        pytest.fail("the preset tiny-arith-dparallel is declared but its files are not shipped")
    lm, tok = load_model("tiny-arith-dparallel", device="cpu")
    info = json.loads((Path(PRESETS["tiny-arith-dparallel"].source) / "distill.json").read_text())
    assert info["teacher"] == "tiny-arith" and info["config"]["train"]["entropy_weight"] == 2.0
    task = get_task("arith")
    docs = task.docs("test", limit=8)
    prompts = [task.build_prompt(d, tok) for d in docs]
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    out = build_sampler("dparallel", {}, task=task).generate(lm, enc.input_ids, enc.attention_mask)
    texts = tok.batch_decode(out.answers, skip_special_tokens=True)
    assert sum(task.score(d, t).correct for d, t in zip(docs, texts)) >= 6
    assert float(out.nfe.float().mean()) < 11.0  # the teacher needs ~11.7 at threshold 0.5
