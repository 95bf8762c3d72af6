"""`dpbench bench`: the measurement loop, prompt building, the forward timer, outputs and CLI."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from dpbench.bench import BenchConfig, ForwardTimer, build_prompts, cache_params, run_bench, to_markdown, write_results
from dpbench.cli import app
from dpbench.models import DiffusionLM
from dpbench.samplers import get_sampler
from dpbench.tasks import get_task


def test_config_is_validated():
    with pytest.raises(ValueError, match=r"samples must be >= 1, got 0"):
        BenchConfig(samples=0)
    with pytest.raises(ValueError, match=r"batch sizes must be >= 1"):
        BenchConfig(batch_sizes=[0])
    with pytest.raises(ValueError, match=r"prompt_fill must be one of fewshot, pad, got 'zeros'"):
        BenchConfig(prompt_fill="zeros")


def test_cache_entries():
    assert cache_params("none") == {"cache": "none"}
    assert cache_params("dual+16") == {"cache": "dual", "dual_lookahead": 16}
    assert cache_params("graph") == {"cache": "none", "cuda_graph": True}
    for bad in ("prefix+4", "dual+x", "dual+"):
        with pytest.raises(ValueError, match=r"cache entries are none, prefix, dual, dual\+N .* or graph, got"):
            cache_params(bad)


def test_forward_timer_counts_every_forward_and_restores(char_tokenizer, tiny_lm):
    ids = char_tokenizer("1+2=", return_tensors="pt", add_special_tokens=False).input_ids
    timer = ForwardTimer(tiny_lm)
    with timer.active():
        out = get_sampler("dparallel", gen_length=16, block_length=8, cache="dual").generate(tiny_lm, ids)
    assert timer.calls == int(out.nfe[0]) and timer.seconds > 0
    assert "logits" not in vars(tiny_lm) and "logits_window" not in vars(tiny_lm)  # class methods again


def test_fewshot_prompts_reach_about_n_tokens(char_tokenizer):
    task = get_task("arith")
    docs = task.docs("test", limit=3)
    short = build_prompts(task, char_tokenizer, docs, None)
    long = build_prompts(task, char_tokenizer, docs, 300)
    for s, text in zip(short, long):
        assert text.endswith(s[s.index("<|user|>"):])  # the problem itself comes last, unchanged
        assert abs(len(char_tokenizer(text).input_ids) - 300) <= 30  # one solved problem is ~20-50 tokens
        assert text.count("<|assistant|>") > 5


@pytest.fixture(scope="module")
def result(char_tokenizer, tiny_lm):
    cfg = BenchConfig(samplers=["dparallel"], params={"gen_length": 16, "block_length": 8}, caches=["none", "dual"],
                      batch_sizes=[1, 2], prompt_tokens=[None, 60], samples=4, prompt_fill="pad")
    return run_bench(cfg, tiny_lm, char_tokenizer, progress=False)


def test_rows_cover_every_combination_with_sane_figures(result, char_tokenizer, tiny_lm):
    rows = result["rows"]
    assert len(rows) == 8
    assert {(r["cache"], r["batch_size"], r["prompt_tokens"]) for r in rows} == {
        (c, b, n) for c in ("none", "dual") for b in (1, 2) for n in (None, 60)
    }
    for r in rows:
        assert r["latency_p50_s"] <= r["latency_p95_s"] and r["seconds_total"] > 0
        assert 0.0 <= r["sampler_overhead"] < 1.0 and r["forward_calls"] >= r["batches"]
        outside = r["seconds_total"] - r["forward_seconds"]
        assert r["overhead_us_per_forward"] == pytest.approx(1e6 * outside / r["forward_calls"])
        assert r["tokens_per_forward"] == pytest.approx(r["answer_tokens_mean"] / r["nfe_mean"])
        assert r["peak_mem_mb"] > 0 and 0.0 <= r["accuracy"] <= 1.0
        if r["prompt_tokens"] == 60:  # padded to 60 positions, of which only the prompt is real
            assert r["prompt_positions_mean"] == 60 and r["prompt_tokens_mean"] < 40
    by = {(r["cache"], r["batch_size"], r["prompt_tokens"]): r for r in rows}
    for b in (1, 2):
        for n in (None, 60):
            none, dual = by["none", b, n], by["dual", b, n]
            assert none["agreement_with_none"] == 1.0 and none["speedup_vs_none"] == 1.0
            assert dual["forward_tokens_per_sample"] < none["forward_tokens_per_sample"]
            assert dual["nfe_mean"] >= 2  # at least one forward per block
    # The NFE the bench reports is what the sampler gives for those prompts.
    task = get_task("arith")
    docs = task.docs("test", limit=4)
    enc = char_tokenizer(build_prompts(task, char_tokenizer, docs, None), return_tensors="pt", padding=True,
                         add_special_tokens=False)
    out = get_sampler("dparallel", **{**task.params_for("dparallel"), "gen_length": 16, "block_length": 8}).generate(
        tiny_lm, enc.input_ids, enc.attention_mask)
    assert by["none", 2, None]["nfe_mean"] == pytest.approx(float(out.nfe.float().mean()))


def test_outputs(result, tmp_path):
    paths = write_results(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == 8 and data["config"]["prompt_fill"] == "pad"
    table = paths["table"].read_text()
    assert table == to_markdown(result) and table.count("\n| dparallel |") == 8
    assert paths["chart"].stat().st_size > 1000


def test_cli_runs_on_the_shipped_model(tmp_path):
    res = CliRunner().invoke(app, ["bench", "--model", "tiny-arith", "--sampler", "dparallel", "--cache", "none,dual",
                                   "--step", "kernel,tensor", "--batch-size", "2", "--samples", "2", "--out", str(tmp_path),
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "| dparallel | dual | kernel | 2 |" in res.output and "| dparallel | dual | tensor | 2 |" in res.output
    assert (tmp_path / "bench.json").exists() and (tmp_path / "bench.png").exists()
    data = json.loads((tmp_path / "bench.json").read_text())
    if shutil.which(os.environ.get("CC", "cc")):
        assert data["environment"]["step_kernel"] == "on"
    for cache in ("none", "dual"):  # the two step paths decode the same text
        kern, tens = (next(r for r in data["rows"] if r["cache"] == cache and r["step"] == p) for p in ("kernel", "tensor"))
        assert kern["params"]["step_kernel"] is True and tens["params"]["step_kernel"] is False
        assert kern["nfe_mean"] == tens["nfe_mean"] and kern["accuracy"] == tens["accuracy"]
    bad = CliRunner().invoke(app, ["bench", "--cache", "full", "--samples", "1", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "cache must be one of none, prefix, dual" in bad.output
    bad = CliRunner().invoke(app, ["bench", "--step", "fused", "--samples", "1", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "step paths must be some of kernel, tensor, got ['fused']" in bad.output


def test_help_has_an_example():
    res = CliRunner().invoke(app, ["bench", "--help"])
    assert res.exit_code == 0 and "Example: dpbench bench" in res.output


def test_an_interrupted_bench_keeps_the_rounds_it_measured(char_tokenizer, tiny_lm, tmp_path):
    cfg = BenchConfig(samplers=["dparallel"], params={"gen_length": 16, "block_length": 8}, caches=["none", "dual"],
                      batch_sizes=[1], samples=4)
    seen = []

    def on_round(partial):
        seen.append(partial)
        write_results(partial, tmp_path, with_chart=False)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as a user's Ctrl-C or a job limit would, mid-bench

    with pytest.raises(KeyboardInterrupt):
        run_bench(cfg, tiny_lm, char_tokenizer, progress=False, on_round=on_round)
    assert [p["rounds"] for p in seen] == [[1, 4], [2, 4]] and not any(p["complete"] for p in seen)
    kept = json.loads((tmp_path / "bench.json").read_text())
    assert kept["complete"] is False and [r["samples"] for r in kept["rows"]] == [2, 2]
    assert kept["rows"][1]["agreement_with_none"] is not None  # compared on the documents both measured
    assert "PARTIAL: 2 of 4 rounds measured" in (tmp_path / "bench.md").read_text()
    assert not (tmp_path / "bench.png").exists() and not list(tmp_path.glob("*.tmp"))
    done = run_bench(cfg, tiny_lm, char_tokenizer, progress=False)
    assert done["complete"] is True and [r["samples"] for r in done["rows"]] == [4, 4]
    assert "PARTIAL" not in to_markdown(done)
