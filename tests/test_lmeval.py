"""dpbench as an lm-eval model: GSM8K through lm_eval.simple_evaluate on local data, offline."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from dpbench.lmeval import DPBenchLM, evaluate, local_task_dir
from dpbench.models import DiffusionLM
from dpbench.tasks import get_task
from dpbench.tasks.datafiles import DataUnavailableError

GSM8K = Path(__file__).parent / "fixtures" / "gsm8k_tiny.jsonl"
G, BLOCK = 32, 16


class ScriptedModel(nn.Module):
    """Predicts a fixed answer (then EOS) at the answer positions, whatever the prompt."""

    def __init__(self, tokenizer, text: str, gen_length: int) -> None:
        super().__init__()
        ids = tokenizer(text, add_special_tokens=False).input_ids
        ids += [tokenizer.eos_token_id] * (gen_length - len(ids))
        self.register_buffer("script", torch.tensor(ids))
        self.weight = nn.Parameter(torch.zeros(1))  # gives the adapter a device and dtype
        self.vocab, self.gen_length = len(tokenizer), gen_length

    def forward(self, input_ids, attention_mask=None, **_):
        b, n = input_ids.shape
        logits = torch.zeros(b, n, self.vocab)
        logits[:, n - self.gen_length :] = 10.0 * nn.functional.one_hot(self.script, self.vocab).float()
        return SimpleNamespace(logits=logits)


def _dpbench_lm(lm, tok, **kw) -> DPBenchLM:
    return DPBenchLM(lm=lm, tokenizer=tok, sampler=kw.pop("sampler", "dparallel"), gen_length=G, block_length=BLOCK,
                     batch_size=kw.pop("batch_size", 4), **kw)


def test_lmeval_metric_and_dpbench_records_agree_with_tiny_model(tiny_lm, char_tokenizer, tmp_path):
    dl = _dpbench_lm(tiny_lm, char_tokenizer, records_path=str(tmp_path / "records.jsonl"))
    run = evaluate(dl, "gsm8k", data_file=GSM8K, workdir=tmp_path / "tasks")
    samples = {s["doc_id"]: s for s in run.results["samples"]["dpbench_gsm8k"]}
    task = get_task("gsm8k", data_file=GSM8K)
    docs = {d.doc_id: d for d in task.docs()}
    assert sorted(r["doc_id"] for r in run.records) == sorted(docs)  # one record per document
    for rec in run.records:
        sample = samples[int(rec["doc_id"])]
        assert sample["resps"][0][0] == rec["completion"]  # the same text reached lm-eval and the record
        ours = task.score(docs[rec["doc_id"]], rec["completion"])
        assert bool(sample["exact_match"]) == ours.correct == rec["correct"]
        assert rec["nfe"] >= G // BLOCK and 0 <= rec["gen_tokens"] <= G and rec["seconds"] > 0
        assert rec["prompt_tokens"] == len(char_tokenizer(dl.prompt(sample["arguments"][0][0]),
                                                         add_special_tokens=False).input_ids)
    saved = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(saved) == len(docs) and {s["nfe"] for s in saved} == {r["nfe"] for r in run.records}
    acc = run.results["results"]["dpbench_gsm8k"]["exact_match,none"]
    assert acc == pytest.approx(sum(r["correct"] for r in run.records) / len(run.records))


def test_until_and_scores_with_a_scripted_answer(char_tokenizer, tmp_path):
    """The answer '#### 7' is followed by a stop string and another '#### 42': only 7 counts."""
    model = ScriptedModel(char_tokenizer, "#### 7\nQuestion: again #### 42", G)
    lm = DiffusionLM(model, mask_id=char_tokenizer.mask_token_id, eos_token_ids=[char_tokenizer.eos_token_id])
    run = evaluate(_dpbench_lm(lm, char_tokenizer), "gsm8k", data_file=GSM8K, workdir=tmp_path)
    by_doc = {r["doc_id"]: r for r in run.records}
    assert [by_doc[str(i)]["correct"] for i in range(6)] == [False, False, True, False, False, True]
    assert all(r["completion"] == "#### 7\n" and r["dpbench_correct"] == r["correct"] for r in run.records)
    assert all(r["gen_tokens"] == len("#### 7\nQuestion: again #### 42") for r in run.records)


def test_batched_generation_matches_one_at_a_time(tiny_lm, char_tokenizer, tmp_path):
    runs = [evaluate(_dpbench_lm(tiny_lm, char_tokenizer, batch_size=b), "gsm8k", data_file=GSM8K, limit=4,
                     workdir=tmp_path / f"b{b}") for b in (1, 4)]
    one, four = ({r["doc_id"]: (r["completion"], r["nfe"], r["gen_tokens"]) for r in run.records} for run in runs)
    assert one == four and len(one) == 4


def test_generation_only_and_registry(tiny_lm, char_tokenizer):
    from lm_eval.api.registry import get_model

    assert get_model("dpbench") is DPBenchLM
    assert get_model("dummy").__name__ == "DummyLM"  # lm-eval's own models still resolve
    dl = _dpbench_lm(tiny_lm, char_tokenizer)
    with pytest.raises(NotImplementedError, match="only generates"):
        dl.loglikelihood([])
    with pytest.raises(NotImplementedError):
        dl.loglikelihood_rolling([])
    with pytest.raises(ValueError, match="unknown parameter"):
        _dpbench_lm(tiny_lm, char_tokenizer, thresold=0.5)


def test_local_variant_and_offline_error(tmp_path):
    out = local_task_dir("gsm8k", GSM8K, tmp_path)
    cfg = yaml.safe_load(next(out.glob("*.yaml")).read_text())
    assert cfg["task"] == "dpbench_gsm8k" and cfg["dataset_path"] == "json"
    assert Path(cfg["dataset_kwargs"]["data_files"]["test"]).is_absolute() and Path(cfg["include"]).is_file()
    with pytest.raises(ValueError, match="valid: gsm8k"):
        local_task_dir("hellaswag", GSM8K, tmp_path)
    with pytest.raises(DataUnavailableError, match="--data-file"):  # HF_*_OFFLINE in tests: no hub
        get_task("gsm8k").docs()


def test_module_wrapper_adds_include_path(monkeypatch):
    from lm_eval._cli.harness import HarnessCLI

    import dpbench.lmeval.__main__ as wrapper

    seen = []
    monkeypatch.setattr(HarnessCLI, "execute", lambda self, ns: seen.append(ns))
    wrapper.main(["--model", "dummy", "--tasks", "hellaswag"])
    assert seen[-1].include_path == str(wrapper.TASKS_DIR)
    wrapper.main(["--model", "dummy", "--tasks", "hellaswag", "--include_path", "/x"])
    assert seen[-1].include_path == "/x"
    # With --data_file: a task folder whose dpbench_gsm8k reads the file, the other shipped tasks linked in.
    wrapper.main(["--model", "dummy", "--tasks", "dpbench_gsm8k", "--data_file", str(GSM8K)])
    folder = Path(seen[-1].include_path)
    local = yaml.safe_load((folder / "dpbench_gsm8k_local.yaml").read_text())
    assert local["dataset_kwargs"]["data_files"]["test"] == str(GSM8K.resolve())
    assert (folder / "minerva_math.yaml").is_symlink() and not (folder / "gsm8k.yaml").exists()


DP_SCRIPT = """
import json, sys
import torch
from dpbench.lmeval import DPBenchLM, evaluate
from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer


def tiny_dpbench_lm(**kw):
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64, vocab_size=len(tok),
                      mask_token_id=tok.mask_token_id)
    lm = DiffusionLM(LLaDAModelLM(cfg).eval(), mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id])
    return DPBenchLM(lm=lm, tokenizer=tok, sampler="dparallel", gen_length=32, block_length=16, batch_size=2, **kw)


if __name__ == "__main__":
    dl = tiny_dpbench_lm(device="cpu")
    run = evaluate(dl, "gsm8k", data_file=sys.argv[1], workdir=sys.argv[2] + f"/tasks{dl.rank}")
    if dl.rank == 0:
        json.dump({"world_size": dl.world_size, "records": run.records}, open(sys.argv[2] + "/out.json", "w"))
"""


def test_two_process_run_matches_one_process(tmp_path, monkeypatch):
    """torchrun with 2 CPU processes (gloo): lm-eval shards the documents, rank 0 gets every record,
    and they equal a 1-process run's."""
    import os
    import subprocess
    import sys

    script = tmp_path / "dp.py"
    script.write_text(DP_SCRIPT)
    # --standalone: torchrun picks a free port (a fixed one can be taken on a shared machine)
    # --log-dir and TMPDIR inside tmp_path: torchrun leaves no /tmp/torchelastic_* directory behind.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--log-dir", str(tmp_path / "torchrun-logs"), str(script), str(GSM8K), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    two = json.loads((tmp_path / "out.json").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    from dp import tiny_dpbench_lm  # the same model, built in this process

    one = evaluate(tiny_dpbench_lm(), "gsm8k", data_file=GSM8K, workdir=tmp_path / "one").records
    keep = ("doc_id", "completion", "nfe", "gen_tokens", "prompt_tokens", "correct")
    assert two["world_size"] == 2 and {r["rank"] for r in two["records"]} == {0, 1}
    assert [{k: r[k] for k in keep} for r in two["records"]] == [{k: r[k] for k in keep} for r in one]
    assert len(one) == 6


# -- resuming: DPBenchLM reuses its records_path; `dpbench run` resumes the lm-eval engine ----------------------


def _req(ctx: str, doc_id: int, until=("Question:",), task: str = "t"):
    return SimpleNamespace(args=(ctx, {"until": list(until)}), task_name=task, doc_id=doc_id)


def _count_decodes(dl: DPBenchLM) -> list[str]:
    seen: list[str] = []
    run_batch = dl._run

    def counted(prompts, *args):
        seen.extend(prompts)
        return run_batch(prompts, *args)

    dl._run = counted
    return seen


def test_generate_until_reuses_only_identical_requests(tiny_lm, char_tokenizer, tmp_path):
    path = tmp_path / "records.jsonl"
    kw = dict(records_path=str(path), resume=True, warmup=False, batch_size=2)
    reqs = [_req("2 + 3 =", 0), _req("4 + 4 =", 1), _req("1 + 6 =", 2)]
    first = _dpbench_lm(tiny_lm, char_tokenizer, **kw)
    out1 = first.generate_until(reqs)
    assert len(path.read_text().splitlines()) == 3 and first.reused == 0
    with open(path, "a") as fh:
        fh.write('{"task": "t", "doc_id": 9, "nf')  # a crash in the middle of a write

    again = [reqs[0], _req("4 + 4 =", 1, until=("\n",)), _req("1 + 7 =", 2), _req("5 + 5 =", 3)]
    second = _dpbench_lm(tiny_lm, char_tokenizer, **kw)
    decoded = _count_decodes(second)
    out2 = second.generate_until(again)
    # Only the identical request is answered from the file; changed args, a changed prompt and a new doc are decoded.
    assert sorted(decoded) == sorted(second.prompt(r.args[0]) for r in again[1:])
    assert second.reused == 1 and out2[0] == out1[0]
    by_doc = {r["doc_id"]: r for r in second.records}
    assert by_doc[0] == first.records[0]  # the original decode's record: NFE, seconds, ...
    assert "request" not in by_doc[0]
    lines = [json.loads(x) for x in path.read_text().splitlines()]  # the cut line was dropped, appends are clean
    assert [r["doc_id"] for r in lines[:3]] == [0, 1, 2] and sorted(r["doc_id"] for r in lines[3:]) == [1, 2, 3]
    assert all(len(r["request"]) == 64 for r in lines)

    # Another sampler configuration never reuses; resume off never reads the file.
    other = _dpbench_lm(tiny_lm, char_tokenizer, **{**kw, "threshold": 0.7})
    decoded = _count_decodes(other)
    other.generate_until(reqs)
    assert other.reused == 0 and len(decoded) == 3
    plain = _dpbench_lm(tiny_lm, char_tokenizer, records_path=str(path), warmup=False)
    decoded = _count_decodes(plain)
    plain.generate_until(reqs[:1])
    assert plain.reused == 0 and len(decoded) == 1
    with pytest.raises(ValueError, match="records_path"):
        _dpbench_lm(tiny_lm, char_tokenizer, resume=True)


def test_lmeval_engine_run_resumes_after_interrupt(tiny_dir, tmp_path, monkeypatch):
    """`dpbench run gsm8k` (lm-eval engine) killed after two batches: the rerun decodes only the rest,
    and its samples.jsonl equals an uninterrupted run's."""
    from dpbench.runner import RunConfig, RunConfigMismatch, read_records, run

    questions = [json.loads(x)["question"] for x in GSM8K.read_text().splitlines()]
    cfg = dict(task="gsm8k", model=tiny_dir, sampler="dparallel", data_file=str(GSM8K), batch_size=2,
               params={"gen_length": 16, "block_length": 8, "threshold": 0.8}, device="cpu", progress=False)
    calls: list[tuple[bool, list[str]]] = []  # (warm-up?, doc_ids) per decoded batch
    fail_at = {"n": None}
    real = DPBenchLM._run

    def counted(self, prompts, *args):
        warmup = not self._warm
        calls.append((warmup, [str(next(i for i, q in enumerate(questions) if q in p)) for p in prompts]))
        if not warmup and fail_at["n"] is not None and sum(not w for w, _ in calls) == fail_at["n"]:
            raise RuntimeError("interrupted")
        return real(self, prompts, *args)

    monkeypatch.setattr(DPBenchLM, "_run", counted)
    full = run(RunConfig(**cfg, out=str(tmp_path / "full")))
    assert full.n == full.new == 6

    out = tmp_path / "run"
    fail_at["n"], calls[:] = 3, []
    with pytest.raises(RuntimeError, match="interrupted"):
        run(RunConfig(**cfg, out=str(out)))
    partial = read_records(out / "lmeval_partial.jsonl")
    finished = {str(r["doc_id"]) for r in partial}
    assert len(partial) == 4 and not (out / "samples.jsonl").exists()  # two batches on disk, lm-eval never scored
    assert finished == {d for w, ids in calls[1:3] for d in ids}
    with open(out / "lmeval_partial.jsonl", "a") as fh:
        fh.write(json.dumps(partial[0])[:40])  # and the next batch was cut mid-write

    # A different configuration does not resume (nor touch) the partial records.
    before = (out / "lmeval_partial.jsonl").read_bytes()
    with pytest.raises(RunConfigMismatch, match="params.threshold"):
        run(RunConfig(**{**cfg, "params": {**cfg["params"], "threshold": 0.7}}, out=str(out)))
    assert (out / "lmeval_partial.jsonl").read_bytes() == before

    fail_at["n"], calls[:] = None, []
    resumed = run(RunConfig(**cfg, out=str(out)))
    decoded = [d for w, ids in calls if not w for d in ids]
    assert sorted(decoded) == sorted({str(i) for i in range(6)} - finished)  # nothing finished was decoded again
    assert resumed.n == 6 and resumed.new == 2
    recs = read_records(out / "samples.jsonl")
    assert sorted(r["doc_id"] for r in recs) == [str(i) for i in range(6)]  # every doc exactly once
    keep = ("doc_id", "completion", "correct", "extracted", "nfe", "gen_tokens", "prompt_tokens", "dpbench_correct")
    ref = {r["doc_id"]: {k: r[k] for k in keep} for r in read_records(tmp_path / "full" / "samples.jsonl")}
    assert {r["doc_id"]: {k: r[k] for k in keep} for r in recs} == ref
    stored = {str(r["doc_id"]): r for r in partial}
    assert all(r["seconds"] == stored[r["doc_id"]]["seconds"] for r in recs if r["doc_id"] in finished)
    acc = json.loads((out / "lmeval_results.json").read_text())["dpbench_gsm8k"]["exact_match,none"]
    assert acc == pytest.approx(resumed.accuracy)

    calls[:] = []  # a finished run is returned as is
    assert run(RunConfig(**cfg, out=str(out))).new == 0 and calls == []
