"""The step three ways, side by side in one run: the C kernel, the tensor path, torch.compile'd tensor path.

Decodes the same arith test problems with ``dparallel`` and ``baseline`` on the shipped tiny-arith
(the CPU case the kernel exists for), one batch per strategy in turn (round-robin, after a warm-up
each), timing every forward (dpbench.bench.ForwardTimer). Reports per strategy the seconds per
sample and the time outside the model per forward call (what the step costs), plus the one-off
compile time of the compiled path (its first calls, which torch.compile spends compiling).

The compiled path is the tensor step (StepInputs + the sampler's select + commit + masks left)
as one function under ``torch.compile(dynamic=True)``; tokens must match the other two (checked).

    python scripts/measure_step_paths.py --threads 1 --samples 64 --batch-sizes 1,32 > results/bench/step-paths/step_paths.txt
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dpbench.bench import ForwardTimer
from dpbench.models import load_model
from dpbench.samplers import base, build_sampler
from dpbench.samplers.step import StepInputs, TensorStep
from dpbench.tasks import get_task


class CompiledStep(TensorStep):
    """`TensorStep` with its tensor work compiled once (the loop's view/copy handling stays outside)."""

    compiled: dict = {}

    def __init__(self, sampler, mask_id, temperature, generator, trace=None):
        super().__init__(sampler, mask_id, temperature, generator, trace)
        key = (type(sampler), tuple(sorted(sampler.params().items())))
        if key not in self.compiled:
            select, masked_only = sampler.select, sampler.selects_masked_only

            def step(logits, tokens, steps):
                is_mask = tokens == mask_id
                s = StepInputs(logits, is_mask, steps, mask_id, 0.0, None)
                commit = select(s)
                if not masked_only:
                    commit = commit & is_mask
                out = torch.where(commit, s.x0, tokens)
                return out, (out == mask_id).any(1)

            self.compiled[key] = torch.compile(step, dynamic=True)
        self.fn = self.compiled[key]

    def __call__(self, logits, tokens, win, policy):
        steps = policy.steps()
        new, left = self.fn(logits, tokens, torch.tensor(steps) if steps is not None else None)
        tokens.copy_(new)
        return left.tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--samplers", default="dparallel,baseline")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm, tok = load_model("tiny-arith", device="cpu", dtype="fp32")
    task = get_task("arith")
    docs = task.docs("test", limit=args.samples)
    warm = task.docs("train", limit=64)
    real_strategy = base.step_strategy
    paths = ("kernel", "tensor", "compiled")

    def strategy_for(path):
        def choose(sampler, lm_, x, *, trace=None, generator=None):
            if path == "compiled":
                return CompiledStep(sampler, lm_.mask_id, sampler.config.temperature, generator, trace)
            return real_strategy(sampler, lm_, x, trace=trace, generator=generator)
        return choose

    def encode(ds):
        enc = tok([task.build_prompt(d, tok) for d in ds], return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False)
        return enc.input_ids, enc.attention_mask

    timer = ForwardTimer(lm)
    print(f"tiny-arith fp32 CPU, {torch.get_num_threads()} thread(s), {args.samples} arith test problems per row")
    for name in args.samplers.split(","):
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            smps = {p: build_sampler(name, {"step_kernel": p == "kernel"}, task=task) for p in paths}
            batches = [encode(docs[i : i + bs]) for i in range(0, len(docs), bs)]
            stats = {p: {"secs": [], "fwd": 0.0, "calls": 0, "seqs": []} for p in paths}
            compile_s = None
            for p in paths:  # warm-up; the compiled path compiles here
                base.step_strategy = strategy_for(p)
                t0 = time.perf_counter()
                for _ in range(2):
                    smps[p].generate(lm, *encode(warm[:bs]))
                if p == "compiled":
                    compile_s = time.perf_counter() - t0
            with timer.active():
                for ids, am in batches:
                    for p in paths:
                        base.step_strategy = strategy_for(p)
                        f0, c0 = timer.seconds, timer.calls
                        t0 = time.perf_counter()
                        out = smps[p].generate(lm, ids, am)
                        stats[p]["secs"].append(time.perf_counter() - t0)
                        stats[p]["fwd"] += timer.seconds - f0
                        stats[p]["calls"] += timer.calls - c0
                        stats[p]["seqs"].append(out.sequences)
            base.step_strategy = real_strategy
            same = all(torch.equal(a, b) for p in paths[1:] for a, b in zip(stats["kernel"]["seqs"], stats[p]["seqs"]))
            print(f"\n{name}, batch {bs}: same tokens on all three paths: {same}; compile (first 2 decodes) {compile_s:.1f} s")
            print("| path | s/sample | us outside the model per forward | share outside |")
            print("|---|---|---|---|")
            for p in paths:
                st = stats[p]
                total = sum(st["secs"])
                print(f"| {p} | {total / len(docs) * 1e3:.2f} ms | {1e6 * (total - st['fwd']) / st['calls']:.0f} "
                      f"| {100 * (1 - st['fwd'] / total):.1f}% |")
            print(f"(per-batch seconds, median: " + ", ".join(f"{p} {statistics.median(stats[p]['secs']) * 1e3:.1f} ms" for p in paths) + ")")


if __name__ == "__main__":
    main()
