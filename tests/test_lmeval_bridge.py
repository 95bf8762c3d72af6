"""The lm-eval bridge does what lm-eval users expect: gen_kwargs honoured or refused, pretrained=, records
directory, an offline data route, dpbench's figures in lm-eval's results, `dpbench report` on its output."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dpbench.lmeval import DPBenchLM, evaluate
from dpbench.lmeval.genkwargs import sampler_overrides

GSM8K = Path(__file__).parent / "fixtures" / "gsm8k_tiny.jsonl"
BASE = {"gen_length": 64, "block_length": 16, "temperature": 0.0, "threshold": 0.5}


def test_gen_kwargs_map_to_sampler_params():
    assert sampler_overrides({"until": ["\n"], "do_sample": False}, BASE) == {}
    assert sampler_overrides({"max_gen_toks": 4}, BASE) == {"gen_length": 16}  # rounded up to a whole block
    assert sampler_overrides({"max_gen_toks": 17}, BASE) == {"gen_length": 32}
    assert sampler_overrides({"max_gen_toks": 64}, BASE) == {}
    assert sampler_overrides({"max_gen_toks": 4, "temperature": 0.7, "do_sample": True}, BASE) == {
        "gen_length": 16, "temperature": 0.7}
    assert sampler_overrides({"do_sample": True}, BASE) == {"temperature": 1.0}
    # A fixed-step baseline keeps its steps per block (64 steps / 4 blocks -> 16 per block).
    assert sampler_overrides({"max_gen_toks": 20}, {**BASE, "steps": 64}) == {"gen_length": 32, "steps": 32}


@pytest.mark.parametrize("kwargs,match", [
    ({"top_p": 0.9}, "cannot honour gen_kwargs top_p=0.9"),
    ({"num_beams": 4, "until": ["x"]}, "num_beams"),
    ({"temperature": 0.7, "do_sample": False}, "do_sample=True to sample"),
    ({"do_sample": True, "temperature": 0}, "temperature > 0"),
    ({"max_gen_toks": 0}, "max_gen_toks must be >= 1"),
])
def test_gen_kwargs_it_cannot_honour_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampler_overrides(kwargs, BASE)


def test_model_args_temperature_is_not_silently_dropped_by_the_task():
    with pytest.raises(ValueError, match="model args set temperature=0.7"):
        sampler_overrides({"do_sample": False}, {**BASE, "temperature": 0.7})


def _req(ctx, doc_id, **gen):
    return SimpleNamespace(args=(ctx, {"until": ["Question:"], **gen}), task_name="t", doc_id=doc_id)


def test_generate_until_decodes_with_the_requests_gen_kwargs(tiny_lm, char_tokenizer):
    dl = DPBenchLM(lm=tiny_lm, tokenizer=char_tokenizer, sampler="dparallel", gen_length=32, block_length=16,
                   batch_size=4, warmup=False)
    seen = []
    real = dl._run
    dl._run = lambda prompts, first, sampler=None, stops=None: seen.append(sampler.params()) or real(prompts, first, sampler, stops)
    dl.generate_until([_req("1 + 2 =", 0), _req("3 + 4 =", 1, max_gen_toks=4, do_sample=True, temperature=0.7)])
    by_doc = {r["doc_id"]: r for r in dl.records}
    assert "sampler_params" not in by_doc[0] and by_doc[1]["sampler_params"] == {"gen_length": 16, "temperature": 0.7}
    assert sorted((p["gen_length"], p["temperature"]) for p in seen) == [(16, 0.7), (32, 0.0)]  # one sampler per batch
    assert by_doc[1]["gen_tokens"] <= 16 and by_doc[1]["nfe"] >= 1


def test_refused_gen_kwargs_fail_before_anything_is_decoded(tiny_lm, char_tokenizer):
    dl = DPBenchLM(lm=tiny_lm, tokenizer=char_tokenizer, sampler="dparallel", gen_length=32, block_length=16)
    decoded = []
    dl._run = lambda *a, **k: decoded.append(a)
    with pytest.raises(ValueError, match="top_k"):
        dl.generate_until([_req("1 + 2 =", 0), _req("3 + 4 =", 1, top_k=5)])
    assert decoded == [] and dl.records == []


def test_pretrained_key_records_dir_and_all_argument_problems_at_once(tiny_dir, tmp_path, monkeypatch):
    import dpbench.models.loading as loading
    from dpbench.preflight import PreflightError

    dl = DPBenchLM(pretrained=tiny_dir, sampler="dparallel", gen_length=32, block_length=16,
                   records_path=str(tmp_path / "new" / "dir" / "records.jsonl"), device="cpu", warmup=False)
    assert dl.model_name == tiny_dir and (tmp_path / "new" / "dir").is_dir()
    dl.generate_until([_req("1 + 2 =", 0)])
    assert len((tmp_path / "new" / "dir" / "records.jsonl").read_text().splitlines()) == 1
    loads = []
    import dpbench.models

    # dpbench.models first: its lazy lookup would otherwise cache the patched loader for good.
    monkeypatch.setattr(dpbench.models, "load_model", lambda *a, **k: loads.append(a), raising=False)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a))
    with pytest.raises(PreflightError) as err:
        DPBenchLM(pretrained=str(tmp_path / "missing"), sampler="dparalel", thresold=0.5, batch_size=0)
    text = str(err.value)
    assert "does not exist" in text and "did you mean 'dparallel'" in text and "batch_size must be >= 1" in text
    assert loads == []  # nothing was loaded
    with pytest.raises(PreflightError, match="name different models"):
        DPBenchLM(model="tiny-arith-dparallel", pretrained=tiny_dir)


def test_dpbench_figures_go_into_lmevals_results(tiny_lm, char_tokenizer, tmp_path):
    dl = DPBenchLM(lm=tiny_lm, tokenizer=char_tokenizer, sampler="dparallel", gen_length=32, block_length=16, batch_size=4)
    run = evaluate(dl, "gsm8k", data_file=GSM8K, workdir=tmp_path)
    res = run.results["results"]["dpbench_gsm8k"]
    nfe = [r["nfe"] for r in run.records]
    assert res["dpbench_nfe_mean,none"] == pytest.approx(sum(nfe) / len(nfe))
    assert res["dpbench_tokens_per_forward,none"] == pytest.approx(sum(r["gen_tokens"] for r in run.records) / sum(nfe))
    assert res["dpbench_tpf_leaderboard,none"] == pytest.approx(sum(r["lb_tokens"] for r in run.records) / sum(nfe))
    assert res["dpbench_latency_s_p95,none"] >= res["dpbench_latency_s_p50,none"] > 0
    cfg = run.results["config"]["dpbench"]
    assert cfg["sampler"] == "dparallel" and cfg["params"]["gen_length"] == 32 and cfg["dpbench_version"]
    samples = run.results["samples"]["dpbench_gsm8k"]
    assert all(s["dpbench"]["nfe"] >= 2 for s in samples) and len(samples) == 6


def test_cli_offline_data_route_results_and_report(tiny_dir, tmp_path, monkeypatch):
    """`python -m dpbench.lmeval` with --data_file, offline: lm-eval's results file carries dpbench's figures
    and `dpbench report` reads the output directory."""
    from dpbench.lmeval.__main__ import main
    from dpbench.report import summarize

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "lmout"
    main(["--model", "dpbench", "--model_args", f"pretrained={tiny_dir},sampler=dparallel,gen_length=16,block_length=8",
          "--tasks", "dpbench_gsm8k", "--data_file", str(GSM8K), "--limit", "3", "--batch_size", "2", "--device", "cpu",
          "--output_path", str(out), "--log_samples"])
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["results"]["dpbench_gsm8k"]["dpbench_nfe_mean,none"] >= 2
    assert results["config"]["dpbench"]["params"]["gen_length"] == 16
    table = summarize([out])
    assert table.loc[0, "task"] == "gsm8k" and table.loc[0, "n"] == 3 and table.loc[0, "sampler"] == "dparallel"
    assert table.loc[0, "nfe_mean"] == pytest.approx(results["results"]["dpbench_gsm8k"]["dpbench_nfe_mean,none"])


def test_cli_offline_without_data_file_fails_at_once_naming_the_fix(tmp_path, monkeypatch, capsys):
    import dpbench.models.loading as loading
    from dpbench.lmeval.__main__ import main

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    loads = []
    import dpbench.models

    # dpbench.models first: its lazy lookup would otherwise cache the patched loader for good.
    monkeypatch.setattr(dpbench.models, "load_model", lambda *a, **k: loads.append(a), raising=False)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a))
    with pytest.raises(SystemExit) as exit_:
        main(["--model", "dpbench", "--model_args", "pretrained=tiny-arith,sampler=dparallel,thresold=0.5",
              "--tasks", "dpbench_gsm8k", "--gen_kwargs", "top_p=0.9"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and loads == []
    assert "--data_file gsm8k=gsm8k_test.jsonl" in err and "thresold" in err and "error:" in err
