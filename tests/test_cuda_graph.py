"""`cuda_graph=True`: the loop's use of a replayed forward, checked on CPU with an eager stand-in.

Recording itself needs a GPU (scripts/gpu_check.sh compares replayed and eager decodes
there). Here a stand-in "records" by keeping one output buffer that each replay
recomputes from the graph's input buffer, as a CUDA graph does, so these tests check
everything around the capture: the buffers, the per-shape graphs, the fallbacks and
that decoding is unchanged.
"""

from __future__ import annotations

import pytest
import torch

from dpbench.bench import BenchConfig, run_bench
from dpbench.models.cuda_graph import GraphedForward
from dpbench.samplers import get_sampler


def eager_capture(fn):
    out = fn()

    def replay():
        out.copy_(fn())  # the same buffer every time: a stale reference would see the next step's logits

    return replay, out


@pytest.fixture
def graphed_lm(tiny_lm):
    tiny_lm.graphs = GraphedForward(tiny_lm, capture=eager_capture)
    yield tiny_lm
    tiny_lm.graphs = None


def test_config_and_device_errors(tiny_lm):
    with pytest.raises(ValueError, match=r"cuda_graph applies only with cache='none' .*, got cache='dual'"):
        get_sampler("dparallel", cache="dual", cuda_graph=True)
    with pytest.raises(ValueError, match=r"cuda_graph=True needs a model on a CUDA device, got cpu"):
        get_sampler("dparallel", gen_length=8, block_length=8, cuda_graph=True).generate(tiny_lm, torch.tensor([[5, 6, 7]]))
    with pytest.raises(ValueError, match=r"max_graphs must be >= 1, got 0"):
        GraphedForward(tiny_lm, capture=eager_capture, max_graphs=0)


@pytest.mark.parametrize("name,params", [
    ("dparallel", {"threshold": 0.3}),
    ("baseline", {"steps": 8}),
    ("confidence", {"threshold": 0.7}),
    ("entropy_bound", {"gamma": 0.3}),
])
def test_graphed_decode_equals_eager(graphed_lm, name, params):
    torch.manual_seed(0)
    prompts = torch.randint(5, 40, (3, 6))  # one length: an unpadded batch, so the graph is used
    base = dict(gen_length=16, block_length=8, early_stop=True, **params)
    for ids in (prompts[:1], prompts):  # batch 1, and a batch whose samples finish apart (then eager)
        want = get_sampler(name, **base).generate(graphed_lm, ids, trace=True)
        got = get_sampler(name, **base, cuda_graph=True).generate(graphed_lm, ids, trace=True)
        assert torch.equal(got.sequences, want.sequences) and torch.equal(got.nfe, want.nfe)
        assert torch.equal(got.forward_tokens, want.forward_tokens)
        assert torch.equal(got.trace.step, want.trace.step)
    assert graphed_lm.graphs.recorded == 2  # one graph per input shape, reused by every block and step


def test_padded_batch_runs_eagerly(graphed_lm, char_tokenizer):
    char_tokenizer.padding_side = "left"
    enc = char_tokenizer(["1+2=", "10+20="], return_tensors="pt", padding=True, add_special_tokens=False)
    smp = dict(gen_length=16, block_length=8)
    want = get_sampler("dparallel", **smp).generate(graphed_lm, enc.input_ids, enc.attention_mask)
    got = get_sampler("dparallel", **smp, cuda_graph=True).generate(graphed_lm, enc.input_ids, enc.attention_mask)
    assert torch.equal(got.sequences, want.sequences)
    assert graphed_lm.graphs.recorded == 0  # a graph cannot record the mask's host-side check


def test_graphs_are_kept_per_shape_most_recent_first(tiny_lm):
    g = GraphedForward(tiny_lm, capture=eager_capture, max_graphs=2)
    ids = {n: torch.full((1, n), 7) for n in (4, 5, 6)}
    for n in (4, 5, 4, 6, 4):  # 4 is used again before 6 arrives, so 5 is the one evicted
        out = g(ids[n], positions=(1, n))
        assert torch.equal(out, type(tiny_lm).logits(tiny_lm, ids[n], positions=(1, n)))
    assert g.recorded == 3 and [k[0] for k in g.graphs] == [(1, 6), (1, 4)]


def test_bench_times_graphed_forwards(graphed_lm, char_tokenizer):
    cfg = BenchConfig(samplers=["dparallel"], params={"gen_length": 16, "block_length": 8}, caches=["none", "graph"],
                      batch_sizes=[1], samples=3)
    rows = {r["cache"]: r for r in run_bench(cfg, graphed_lm, char_tokenizer, progress=False)["rows"]}
    graph = rows["graph"]
    assert graph["agreement_with_none"] == 1.0 and graph["nfe_mean"] == rows["none"]["nfe_mean"]
    # Every decoding forward is timed once; the recordings' own forwards are not counted as forwards.
    assert graph["forward_calls"] == 3 * graph["nfe_mean"]
    assert graph["params"]["cuda_graph"] is True
