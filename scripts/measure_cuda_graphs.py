"""What CUDA graphs would save at batch 1: the model forward and the sampler step, eager vs replayed.

At batch 1 a GPU step is bound by kernel launches, not by the GPU: a 1.3B LLaDA
forward launches a few hundred kernels, and the sampler step (dparallel: softmax,
entropy, threshold, argmin, commit, ...) about a dozen more, each costing host time.
A CUDA graph records the kernels once and replays them with one launch. This
script measures, on a random LLaDA-layout model at batch 1 and the loop's own ops:

- forward: `DiffusionLM.logits` of the first block (prompt + gen tokens in), eager vs
  one graph replay (after copying the ids into the graph's input buffer);
- step: the library's dparallel and baseline step (`StepInputs`, `select`, commit,
  the mask test, the one host sync), eager vs replayed (after copying the logits in);
- both: a whole decoding step, eager vs forward graph + step graph.

Each is timed from a synchronised start to the host having the step's result,
interleaved in rounds after a warm-up; outputs of eager and replayed runs are
compared exactly. Nothing here changes how dpbench decodes: it is the evidence for
whether graphing the batch-1 loop is worth building.

    python scripts/measure_cuda_graphs.py            # on a GPU (1.3B layout, bf16)
    python scripts/measure_cuda_graphs.py --small    # CPU smoke test: eager timings only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM
from dpbench.models.cuda_graph import capture, warm_up
from dpbench.models.llada import count_parameters
from dpbench.samplers import get_sampler
from dpbench.samplers.base import StepInputs


def make_step(smp, mask_id: int, logits: torch.Tensor, tokens: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One step of the loop on fixed buffers (as `BlockSampler.generate` runs it at batch 1):
    select, commit into ``tokens`` in place; returns the (1,) "masks left" flags."""

    def step() -> torch.Tensor:
        is_mask = tokens == mask_id
        s = StepInputs(logits, is_mask, [0], mask_id, 0.0, None)
        commit = smp.select(s)
        torch.where(commit, s.x0, tokens, out=tokens)
        return (tokens == mask_id).any(1)

    return step


def record(fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], object], torch.Tensor, float]:
    """dpbench's recording (models/cuda_graph.py) with 3 warm-ups; also the seconds of the capture alone."""
    warm_up(fn, 3)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    replay, out = capture(fn)
    torch.cuda.synchronize()
    return replay, out, time.perf_counter() - t0


def timed(fn: Callable[[], object], sync: Callable[[], None], reset: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        reset()
        sync()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)  # fn ends with a host read (.tolist()) or a sync
    return out


def add_graph_variants(row: dict, variants: dict, steps: dict, fwd, x, x_in, eager_logits, sync) -> None:
    """Capture the forward and each sampler step; check replays against eager runs; add their timings."""
    fwd_replay, logits_out, row["capture_s_forward"] = record(fwd)
    fwd_replay()
    sync()
    row["forward_graph_equal"] = bool(torch.equal(logits_out, eager_logits))
    row["forward_graph_max_abs_diff"] = float((logits_out.float() - eager_logits.float()).abs().max())
    variants["forward graph"] = (lambda: (x_in.copy_(x), fwd_replay(), sync()), lambda: None)
    for name, (step, logits_in, tok_in, reset) in steps.items():
        reset()
        want = step().tolist(), tok_in.clone()
        step_replay, left, row[f"capture_s_{name}_step"] = record(step)
        reset()
        step_replay()
        row[f"{name}_step_graph_equal"] = bool(left.tolist() == want[0] and torch.equal(tok_in, want[1]))
        variants[f"{name} step graph"] = (
            lambda g=step_replay, li=logits_in, lo=left: (li.copy_(eager_logits), g(), lo.tolist()), reset)
        variants[f"{name} forward+step graph"] = (
            lambda g=step_replay, li=logits_in, lo=left: (
                x_in.copy_(x), fwd_replay(), li.copy_(logits_out), g(), lo.tolist()), reset)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a small CPU smoke test (no graphs)")
    ap.add_argument("--prompts", default="25,512", help="prompt lengths (tokens), comma-separated")
    ap.add_argument("--gen", type=int, default=256)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20, help="timed runs per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.small
    dev = torch.device("cuda" if cuda else "cpu")
    size = dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=128) if args.small else dict(
        d_model=2048, n_layers=16, n_heads=16, mlp_hidden_size=5632)
    V = 126464
    cfg = LLaDAConfig(**size, vocab_size=V, mask_token_id=126336, rope_theta=500000.0)
    torch.manual_seed(0)
    with torch.device(dev):
        model = LLaDAModelLM(cfg).to(torch.bfloat16 if cuda else torch.float32).eval()
    lm = DiffusionLM(model, mask_id=cfg.mask_token_id, eos_token_ids=[126081])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "params": count_parameters(model), "gen": args.gen, "block": args.block, "rows": []}
    G, L = args.gen, args.block
    samplers = {"dparallel": get_sampler("dparallel", gen_length=G, block_length=L, threshold=0.5),
                "baseline": get_sampler("baseline", gen_length=G, block_length=L, steps=G // 4)}
    with torch.inference_mode():
        for P in (int(p) for p in args.prompts.split(",")):
            x = torch.cat([torch.randint(0, 126000, (1, P), device=dev), torch.full((1, G), lm.mask_id, device=dev)], 1)
            x[0, P : P + 8] = torch.randint(0, 126000, (8,), device=dev)  # a few committed tokens in the block
            x_in = x.clone()  # the graph's input buffer
            fwd = lambda: lm.logits(x_in, positions=(P, P + L))  # noqa: E731
            row = {"prompt": P}
            eager_logits = fwd()
            variants: dict[str, tuple[Callable[[], object], Callable[[], None]]] = {
                "forward eager": (lambda: (fwd(), sync()), lambda: None)}
            steps = {}
            for name, smp in samplers.items():
                logits_in, tok = eager_logits.clone(), x[:, P : P + L].clone()
                tok_in = tok.clone()
                step = make_step(smp, lm.mask_id, logits_in, tok_in)
                reset = (lambda t=tok, ti=tok_in: ti.copy_(t))
                steps[name] = (step, logits_in, tok_in, reset)
                variants[f"{name} step eager"] = (lambda st=step: st().tolist(), reset)
                variants[f"{name} forward+step eager"] = (
                    lambda st=step, li=logits_in: (li.copy_(fwd()), st().tolist()), reset)
            if cuda:
                try:
                    add_graph_variants(row, variants, steps, fwd, x, x_in, eager_logits, sync)
                except RuntimeError as err:  # report it and keep the eager timings
                    row["graph_error"] = f"{type(err).__name__}: {err}"[:500]
            for fn, reset in variants.values():  # warm-up
                timed(fn, sync, reset, 3)
            times = {k: [] for k in variants}
            for _ in range(args.rounds):
                for k, (fn, reset) in variants.items():
                    times[k] += timed(fn, sync, reset, args.iters)
            row["us_median"] = {k: round(1e6 * statistics.median(v), 1) for k, v in times.items()}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
