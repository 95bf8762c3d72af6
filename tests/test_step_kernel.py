"""The CPU step kernel (samplers/kernel.py, kernels/step.c) against the tensor path it replaces.

The tensor path (`StepInputs` + `select`) is the reference, checked elsewhere against the
reference implementations and diffusers; here the kernel must commit exactly what it
commits, on hand-built logits and over whole decodes of the trained tiny model.
"""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch

from dpbench.samplers import get_sampler
from dpbench.samplers.base import StepInputs
from dpbench.samplers.kernel import KernelRule, kernel_status, step_kernel
from dpbench.samplers.threshold import DParallelSampler

if shutil.which(os.environ.get("CC", "cc")) is None:  # the kernel needs a C compiler; dpbench falls back without one
    pytest.skip("no C compiler on PATH ($CC or cc): the step kernel cannot be built here", allow_module_level=True)

MASK = 10
RULES = {  # sampler, params (gen 16 / block 8 where a schedule depends on them)
    "dparallel": ("dparallel", {"threshold": 0.8}),
    "confidence": ("confidence", {"threshold": 0.6}),
    "baseline": ("baseline", {"gen_length": 16, "block_length": 8, "steps": 6}),
    "entropy_bound": ("entropy_bound", {"gamma": 0.7}),
}


@pytest.fixture(scope="module")
def kernel():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DPBENCH_STEP_KERNEL", "on")  # fail loudly if it cannot be built
        return step_kernel()


def tensor_step(smp, logits, tokens, steps):
    """The loop's tensor path for one step, on rows that share a block."""
    is_mask = tokens == MASK
    s = StepInputs(logits, is_mask, steps, MASK, 0.0, None)
    commit = smp.select(s)
    torch.where(commit, s.x0, tokens, out=tokens)
    return (tokens == MASK).any(1).tolist()


def hand_built(seed: int, A: int = 4, L: int = 8, V: int = 11, dtype=torch.float32):
    """Logits with the cases that bite: ties between positions (equal rows), the mask token as
    the argmax, -inf entries, sharp and flat rows; tokens partly committed already."""
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(A, L + 3, V, generator=g) * torch.rand(A, L + 3, 1, generator=g) * 6
    logits = full[:, 2 : 2 + L]  # a strided view, as the loop passes a block's slice
    logits[:, 4] = logits[:, 1]  # equal positions: equal entropy and confidence (ties go to the earlier)
    logits[:, 2, MASK] = 50.0  # the mask token would win: x0 must skip it
    logits[:, 3, :3] = float("-inf")
    logits = logits.to(dtype)  # (bf16: a contiguous copy)
    tokens = torch.where(torch.rand(A, L, generator=g) < 0.3, torch.randint(0, MASK, (A, L), generator=g), MASK)
    tokens[:, 0] = MASK
    return logits, tokens


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_commits_what_the_tensor_path_commits(kernel, name, dtype):
    sampler, params = RULES[name]
    smp = get_sampler(sampler, **params)
    rule = smp.kernel_rule()
    for seed in range(40):
        logits, tokens = hand_built(seed, dtype=dtype)
        steps = [seed % 3] * tokens.shape[0]  # baseline: k depends on the step
        want_tokens = tokens.clone()
        want_left = tensor_step(smp, logits, want_tokens, steps)
        got_left = kernel(logits, tokens, MASK, rule, steps)
        assert torch.equal(tokens, want_tokens), (name, seed)
        assert got_left == want_left


@pytest.mark.parametrize("sampler, params, want", [
    ("dparallel", {"threshold": 0.1}, [1]),  # every entropy equal and above the threshold: the first masked
    ("confidence", {"threshold": 0.9}, [1]),
    ("baseline", {"gen_length": 8, "block_length": 8, "steps": 4}, [1, 2]),  # k = 2: the first two
    ("entropy_bound", {"gamma": 0.0}, [1]),  # gamma 0: exactly one, the bound holding with equality
])
def test_ties_go_to_the_earliest_masked_position(kernel, sampler, params, want):
    logits = torch.randn(1, 1, 11).expand(2, 8, 11).contiguous()  # the same flat row at every position
    tokens = torch.full((2, 8), MASK)
    tokens[:, 0] = 3  # committed: not a candidate
    smp = get_sampler(sampler, **params)
    ref = tokens.clone()
    tensor_step(smp, logits, ref, [0, 0])
    assert (ref != MASK).nonzero()[:, 1].tolist() == [0, *want] * 2
    kernel(logits, tokens, MASK, smp.kernel_rule(), [0, 0])
    assert torch.equal(tokens, ref)


def test_kernel_writes_through_a_view_and_leaves_other_columns(kernel):
    logits, _ = hand_built(0, A=2)
    x = torch.full((2, 20), MASK)
    x[:, :5] = 3
    block = x[:, 5:13]  # the loop hands the kernel a view of the sequence
    kernel(logits, block, MASK, KernelRule("entropy_threshold", 0.5))
    assert (x[:, :5] == 3).all() and (x[:, 13:] == MASK).all()
    assert (block != MASK).any(1).all()  # at least one commit per row


def tiny_decode(lm, tok, name, params, prompts, bs, step_kernel):
    smp = get_sampler(name, **params, step_kernel=step_kernel)
    tok.padding_side = "left"
    outs = []
    for i in range(0, len(prompts), bs):
        enc = tok(prompts[i : i + bs], return_tensors="pt", padding=True, add_special_tokens=False)
        o = smp.generate(lm, enc.input_ids, enc.attention_mask)
        outs.append((o.sequences, o.nfe, o.forward_tokens))
    return outs


@pytest.fixture(scope="module")
def arith():
    from dpbench.models import load_model
    from dpbench.tasks import get_task

    lm, tok = load_model("tiny-arith")
    task = get_task("arith")
    return lm, tok, task, [task.build_prompt(d, tok) for d in task.docs("test", limit=4)]


@pytest.mark.parametrize("name", ["dparallel", "confidence", "baseline", "entropy_bound"])
@pytest.mark.parametrize("extra", [{}, {"cache": "dual", "early_stop": True}, {"cache": "prefix"}], ids=["none", "dual-es", "prefix"])
def test_decoding_with_the_kernel_equals_the_tensor_path(kernel, arith, name, extra):
    """Tokens, NFE and forward tokens, at batch 1 and at batch 4 (padded prompts; samples finish
    blocks apart, so some steps have rows in different blocks, gathered and scattered back)."""
    lm, tok, task, prompts = arith
    params = {**task.params_for(name), **extra}
    if name == "baseline":
        params["steps"] = params["gen_length"] // 4  # 4 tokens a step: the test stays quick
    for bs in (1, 4):
        want = tiny_decode(lm, tok, name, params, prompts, bs, step_kernel=False)
        got = tiny_decode(lm, tok, name, params, prompts, bs, step_kernel=True)
        for (sw, nw, fw), (sg, ng, fg) in zip(want, got):
            assert torch.equal(sw, sg) and torch.equal(nw, ng) and torch.equal(fw, fg), (name, extra, bs)


def test_the_kernel_runs_where_it_applies_and_only_there(kernel, tiny_lm, monkeypatch):
    calls = []
    real = DParallelSampler.select
    monkeypatch.setattr(DParallelSampler, "select", lambda self, s: calls.append(1) or real(self, s))
    ids = torch.tensor([[5, 6, 7, 8]])
    base = {"gen_length": 16, "block_length": 8}
    get_sampler("dparallel", **base).generate(tiny_lm, ids)
    assert calls == []  # the whole step ran in the kernel
    for kwargs, gen_kwargs in (({"step_kernel": False}, {}), ({"temperature": 0.5}, {"generator": torch.Generator().manual_seed(0)}),
                               ({}, {"trace": True})):
        calls.clear()
        get_sampler("dparallel", **base, **kwargs).generate(tiny_lm, ids, **gen_kwargs)
        assert calls, kwargs  # tensor path


def test_rows_in_different_blocks_run_in_the_kernel_too(kernel, arith, monkeypatch):
    lm, tok, task, prompts = arith
    calls = []
    real = DParallelSampler.select
    monkeypatch.setattr(DParallelSampler, "select", lambda self, s: calls.append(1) or real(self, s))
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = get_sampler("dparallel", **task.params_for("dparallel")).generate(lm, enc.input_ids, enc.attention_mask)
    # Without early stop every sample decodes every block, so different NFE means that at some
    # step the rows were in different blocks.
    assert len(set(out.nfe.tolist())) > 1 and calls == []


def test_a_subclass_with_its_own_select_does_not_inherit_the_rule():
    class Greedy(DParallelSampler):
        def select(self, s):
            return s.is_mask

    class Relabelled(DParallelSampler):  # same select: the rule still describes it
        pass

    assert Greedy().kernel_rule() is None
    assert Relabelled().kernel_rule() == DParallelSampler().kernel_rule()
    assert get_sampler("baseline", remasking="random").kernel_rule() is None  # draws from the torch generator


def test_baseline_schedule_commits_the_block():
    smp = get_sampler("baseline", gen_length=64, block_length=16, steps=20)  # 5 steps a block: 4,3,3,3,3
    assert smp.kernel_rule().k_schedule == (4, 3, 3, 3, 3)


def test_env_switch_and_a_compiler_that_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("DPBENCH_STEP_KERNEL", "off")
    assert step_kernel() is None and kernel_status().startswith("off")
    monkeypatch.setenv("DPBENCH_STEP_KERNEL", "sometimes")
    with pytest.raises(ValueError, match=r"DPBENCH_STEP_KERNEL must be one of auto, on, off, got 'sometimes'"):
        step_kernel()
    monkeypatch.setenv("DPBENCH_CACHE_DIR", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("DPBENCH_STEP_KERNEL", "auto")
    with pytest.warns(RuntimeWarning, match=r"C step kernel could not be built \(false exited with 1"):
        assert step_kernel() is None
    assert kernel_status().startswith("unavailable")
    monkeypatch.setenv("DPBENCH_STEP_KERNEL", "on")
    with pytest.raises(RuntimeError, match=r"DPBENCH_STEP_KERNEL=on but the C step kernel could not be built"):
        step_kernel()
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("DPBENCH_STEP_KERNEL", "auto")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert step_kernel() is None
    assert "FileNotFoundError" in str(seen[-1].message)
    assert not list(tmp_path.glob("kernels/*.so"))


def test_kernel_rule_validation():
    with pytest.raises(ValueError, match=r"kernel rule must be one of .*, got 'median'"):
        KernelRule("median")
    with pytest.raises(ValueError, match=r"k_schedule goes with \(and only with\) top_k_confidence"):
        KernelRule("top_k_confidence")


def test_what_the_kernel_accepts(kernel):
    from dpbench.samplers.kernel import StepKernel

    ids = torch.zeros(1, 4, dtype=torch.long)
    assert StepKernel.accepts(ids, 32)
    assert not StepKernel.accepts(ids, 2048)  # longer than step.c's block buffers: the tensor path
    assert not StepKernel.accepts(ids.int(), 32)
    logits, tokens = hand_built(0, A=2)
    with pytest.raises(ValueError, match=r"tokens must be contiguous along the block, got strides \(1, 2\)"):
        kernel(logits, tokens.t().contiguous().t(), MASK, KernelRule("entropy_threshold", 0.5))
    with pytest.raises(ValueError, match=r"takes CPU logits \(A, L, V\) and int64 tokens \(A, L\), got \(2, 8, 11\) on cpu "
                                         r"and \(2, 8\) torch.int32 on cpu"):
        kernel(logits, tokens.int(), MASK, KernelRule("entropy_threshold", 0.5))


def test_rule_ids_and_limits_have_one_source():
    """step.c gets its rule ids and MAX_BLOCK from kernel.py's flags: the names it uses must be
    exactly the ones Python defines, and it must define none itself."""
    import re

    from dpbench.samplers import kernel as k

    src = k.SOURCE.read_text()
    code = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    used = set(re.findall(r"\brule == ([A-Z_]+)\b", code)) | set(re.findall(r"defined\(([A-Z_]+)\)", code))
    assert used == {name.upper() for name in k.RULES} | {"MAX_BLOCK"}
    assert not re.search(r"#define\s+(MAX_BLOCK|" + "|".join(n.upper() for n in k.RULES) + r")\b", code)
    assert not re.search(r"\benum\b", code)
    flags = {f for f in k.FLAGS if f.startswith("-D")}
    assert flags == {f"-D{n.upper()}={v}" for n, v in k.RULES.items()} | {f"-DMAX_BLOCK={k.MAX_BLOCK}"}
