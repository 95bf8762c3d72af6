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
    expected = sorted(f"{n}.{ext}" for n in ("speedup", "tradeoff", "nfe_ecdf", "aup", "convergence") for ext in ("png", "svg"))
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
    assert names == {"speedup", "tradeoff", "nfe_ecdf", "aup"}


def _table(runs):
    from dpbench.report import summarize

    return summarize(runs)


def test_no_baseline_run_draws_no_empty_speedup_bars(tmp_path):
    from dpbench.report.plots import speedup_chart

    runs = [make_run(tmp_path, "dp", "dparallel", {"threshold": 0.5}, [3, 4, 5]),
            make_run(tmp_path, "conf", "confidence", {"threshold": 0.9}, [5, 6, 8])]
    fig = speedup_chart(_table(runs))
    nfe_ax, time_ax, _ = fig.axes[:3]
    heights = [p.get_height() for ax in (nfe_ax, time_ax) for p in ax.patches]
    assert heights and min(heights) > 0  # absolute NFE and latency bars, never a 0.00x bar
    assert "no baseline" in nfe_ax.get_title() and "mean NFE" in nfe_ax.get_title()
    assert nfe_ax.patches[0].get_height() == 4.0  # mean NFE of "dp"
    # With a baseline, a run of another task (no reference) gets a note instead of a bar.
    base = make_run(tmp_path, "base", "baseline", {"steps": 16}, [16, 16, 16])
    fig = speedup_chart(_table([base, runs[0]]))
    assert [round(p.get_height(), 2) for p in fig.axes[0].patches] == [1.0, 4.0]


def test_every_figure_has_a_caption_line(tmp_path):
    from dpbench.report.plots import aup_chart, nfe_chart, speedup_chart, tradeoff_chart
    from dpbench.report.caption import caption_text
    from dpbench.report import load_records

    runs = [make_run(tmp_path, "baseline", "baseline", {"steps": 16}, [16] * 6),
            make_run(tmp_path, "dp", "dparallel", {"threshold": 0.5}, [3, 4, 4, 5, 7, 9])]
    table = _table(runs)
    manifests = table.attrs["manifests"]
    manifests[0].update(device_info={"type": "cpu", "name": "x86_64", "cpu_count": 2, "torch_threads": 1},
                        versions={"dpbench": "9.9"}, git_commit="abcdef0123-dirty")
    cap = caption_text(manifests, table["n"])
    for part in ("model tiny", "task arith", "CPU x86_64 (2 cores, 1 torch thread)", "batch 2", "n=6 per run",
                 "dpbench 9.9 (git abcdef0-dirty)"):
        assert part in cap, (part, cap)
    figs = [speedup_chart(table, cap), tradeoff_chart(table, cap), nfe_chart(load_records(runs), cap), aup_chart(table, cap)]
    for fig in figs:
        assert any(t.get_text() == cap for t in fig.texts)


def test_convergence_chart_shares_the_position_axis_and_explains_its_marks(tmp_path):
    from dpbench.report.convergence import convergence_chart
    from dpbench.records import read_trace

    runs = [make_run(tmp_path, "baseline", "baseline", {"steps": 16}, [16] * 6),
            make_run(tmp_path, "dp", "dparallel", {"threshold": 0.5}, [3, 4, 4, 5, 7, 9])]
    fig = convergence_chart({r.name: read_trace(r) for r in runs}, block_length=8, caption="cap")
    strips, mean_ax = fig.axes[:2], fig.axes[2]
    assert all(ax.get_xlim() == mean_ax.get_xlim() for ax in strips)
    labels = [t.get_text() for t in mean_ax.get_legend().get_texts()]
    assert any("block boundary" in x for x in labels) and any("EOS padding" in x for x in labels)
    assert any("percentile" in x for x in labels) and sum("samples)" in x for x in labels) == 2
    assert [t.get_text() for t in strips[0].texts][:6] == list("4+5=9↵")  # the answer tokens, legible in their cells
