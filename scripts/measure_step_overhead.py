"""Per-step cost of the sampler loop itself, apart from the model.

1. A stub model returns fixed logits, so everything timed outside its forward is
   the sampler's own work (selection, commit, bookkeeping). Run twice: once with
   a forward that does nothing, once with a forward that streams ~5 MB of
   weights through the CPU (as the shipped tiny model's does). The same sampler
   ops cost more after a real forward: their data and code are no longer in cache.
2. The floor: the shipped `tiny-arith` at batch 1 decoded by `dparallel` and by a
   bare loop written for this one case (the same tensor ops, no batching, no
   bookkeeping, no plugin interface), interleaved. What the bare loop spends
   outside the forward is what these ops cost on this machine: the floor of any
   loop built from tensor ops. dpbench's loop runs the CPU step kernel (one C
   call, samplers/kernel.py) unless DPBENCH_STEP_KERNEL=off, which shows the
   tensor path's price instead.

    python scripts/measure_step_overhead.py [--threads 1] [--vocab 103] [--gen 64 --block 16]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from dpbench.bench import ForwardTimer
from dpbench.models import DiffusionLM
from dpbench.samplers import get_sampler


class StubLM(torch.nn.Module):
    def __init__(self, vocab: int, n: int, busy: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.logits = torch.randn(1, n, vocab, generator=g) * 4  # sharp enough that thresholds bite
        self.busy = busy
        self.weights = [torch.randn(384, 128, generator=g) for _ in range(24)]  # ~4.7 MB, like 4 small layers
        self.x = torch.randn(96, 128, generator=g)
        self.buf = torch.empty(96, 384)
        self.p = torch.nn.Parameter(torch.zeros(1))  # gives the adapter a device and dtype

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        if self.busy:
            for w in self.weights:
                torch.mm(self.x, w.t(), out=self.buf)
        return SimpleNamespace(logits=self.logits[:, : input_ids.shape[1]].expand(input_ids.shape[0], -1, -1))


def measure(lm: DiffusionLM, sampler: str, params: dict, prompt: torch.Tensor, reps: int) -> tuple[float, float]:
    smp = get_sampler(sampler, **params)
    for _ in range(10):
        smp.generate(lm, prompt)
    timer = ForwardTimer(lm)
    with timer.active():
        t0, nfe = time.perf_counter(), 0
        for _ in range(reps):
            nfe += int(smp.generate(lm, prompt).nfe.sum())
        total = time.perf_counter() - t0
    return (total - timer.seconds) / nfe * 1e6, timer.seconds / nfe * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=103)
    ap.add_argument("--prompt", type=int, default=25)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--floor-prompts", type=int, default=64)
    ap.add_argument("--floor-reps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    prompt = torch.randint(3, args.vocab - 1, (1, args.prompt))
    base = {"gen_length": args.gen, "block_length": args.block}
    print(f"torch {torch.__version__}, {args.threads} thread(s), vocab {args.vocab}, prompt {args.prompt}, "
          f"gen {args.gen} / block {args.block}; microseconds per step outside the forward")
    print(f"{'sampler':12s} {'empty forward':>14s} {'busy forward':>13s} {'(busy fwd)':>11s}")
    for name, extra in (("baseline", {"steps": args.gen}), ("dparallel", {}), ("confidence", {})):
        row = []
        for busy in (False, True):
            lm = DiffusionLM(StubLM(args.vocab, args.prompt + args.gen, busy), mask_id=args.vocab - 1, eos_token_ids=[1])
            row.append(measure(lm, name, {**base, **extra}, prompt, args.reps))
        print(f"{name:12s} {row[0][0]:14.0f} {row[1][0]:13.0f} {row[1][1]:10.0f}")
    floor(args.floor_prompts, args.floor_reps)


@torch.inference_mode()
def bare_dparallel(lm: DiffusionLM, ids: torch.Tensor, gen: int, block: int, threshold: float) -> int:
    """dparallel at batch 1, temperature 0, no cache: the same ops as dpbench's loop, nothing else."""
    P, mask = ids.shape[1], lm.mask_id
    x = torch.cat([ids, ids.new_full((1, gen), mask)], 1)
    no_mask, nfe = torch.tensor([mask]), 0
    for lo in range(P, P + gen, block):
        tokens = x[:, lo : lo + block]
        is_mask = tokens == mask
        while True:
            logits = lm.logits(x, positions=(lo, lo + block))
            nfe += 1
            h = torch.where(is_mask, torch.special.entr(torch.softmax(logits, -1, dtype=torch.float64)).sum(-1), float("inf"))
            commit = (h <= threshold).scatter_(-1, h.argmin(-1, keepdim=True), True)
            torch.where(commit, logits.index_fill(-1, no_mask, float("-inf")).argmax(-1), tokens, out=tokens)
            is_mask = tokens == mask
            if not is_mask.any(1).tolist()[0]:
                break
    return nfe


def floor(n: int, reps: int) -> None:
    from dpbench.models import load_model
    from dpbench.tasks import get_task

    lm, tok = load_model("tiny-arith")
    task = get_task("arith")
    params = task.params_for("dparallel")
    smp = get_sampler("dparallel", **params)
    prompts = [tok([task.build_prompt(d, tok)], return_tensors="pt", add_special_tokens=False).input_ids
               for d in task.docs("test", limit=n)]
    loops = {
        "dpbench": lambda ids: int(smp.generate(lm, ids).nfe.sum()),
        "bare": lambda ids: bare_dparallel(lm, ids, params["gen_length"], params["block_length"], params["threshold"]),
    }
    for ids in prompts[:5]:
        for run in loops.values():
            run(ids)
    timer, totals = ForwardTimer(lm), {k: [0.0, 0.0, 0] for k in loops}
    with timer.active():
        for _ in range(reps):
            for ids in prompts:
                for name, run in loops.items():
                    f0, t0 = timer.seconds, time.perf_counter()
                    nfe = run(ids)
                    t = totals[name]
                    t[0] += time.perf_counter() - t0
                    t[1] += timer.seconds - f0
                    t[2] += nfe
    print(f"\ntiny-arith, dparallel, batch 1, {n} arith prompts x {reps}: overhead = 1 - forward / wall-clock")
    for name, (wall, fwd, nfe) in totals.items():
        print(f"{name:8s} overhead {1 - fwd / wall:6.2%}  {(wall - fwd) / nfe * 1e6:5.0f} us/step outside  "
              f"{fwd / nfe * 1e3:.2f} ms/forward  NFE {nfe}")


if __name__ == "__main__":
    main()
