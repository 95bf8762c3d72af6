"""Each chart is written, as PNG and SVG, and is not empty."""

from __future__ import annotations

import json
from pathlib import Path

from dpbench.report import plot_runs


def make_run(root: Path, name: str, sampler: str, params: dict, nfe: list[int], trace: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True)
    manifest = {"task": "arith", "model": "tiny", "sampler": sampler, "batch_size": 2, "device": "cpu",
                "params": {"gen_length": 16, "block_length": 8, **params}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    with open(d / "samples.jsonl", "w") as fh:
        for i, f in enumerate(nfe):
            fh.write(json.dumps({"doc_id": f"a{i}", "prompt_tokens": 9, "gen_tokens": 6, "nfe": f,
                                 "seconds": 0.01 * f, "correct": i % 3 != 0, "completion": "4+5=9\n", "extracted": "9"}) + "\n")
    if trace:
        steps = sorted(range(1, max(nfe) + 1))[:16]
        steps += [steps[-1]] * (16 - len(steps))
        row = {"doc_id": "a0", "nfe": max(nfe), "gen_tokens": 6, "correct": True, "step": steps,
               "confidence": [0.5 + 0.03 * i for i in range(15)] + [None], "token_text": list("4+5=9\n") + ["<eos>"] * 10}
        (d / "trace.jsonl").write_text(json.dumps(row) + "\n")
    return d


def test_all_charts_written_and_non_empty(tmp_path):
    runs = [
        make_run(tmp_path, "baseline", "baseline", {"steps": 16}, [16] * 6),
        make_run(tmp_path, "dparallel-0.5", "dparallel", {"threshold": 0.5}, [3, 4, 4, 5, 7, 9]),
        make_run(tmp_path, "confidence-0.9", "confidence", {"threshold": 0.9}, [5, 6, 6, 8, 8, 12], trace=False),
    ]
    paths = plot_runs(runs, tmp_path / "charts")
    names = sorted(p.name for p in paths)
    expected = sorted(f"{n}.{ext}" for n in ("speedup", "tradeoff", "nfe_hist", "convergence") for ext in ("png", "svg"))
    assert names == expected
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 2000, p
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert b"<svg" in data[:2000]
    conv = (tmp_path / "charts" / "convergence.svg").read_text()
    assert conv.count("<g id=\"axes_") >= 2  # one panel per run with a trace (baseline, dparallel) + colourbar


def test_no_traces_means_no_convergence_chart(tmp_path):
    runs = [make_run(tmp_path, "b", "baseline", {"steps": 16}, [16, 16], trace=False)]
    names = {p.stem for p in plot_runs(runs, tmp_path / "c", formats=("png",))}
    assert names == {"speedup", "tradeoff", "nfe_hist"}
