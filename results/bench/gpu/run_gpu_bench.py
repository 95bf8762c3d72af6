"""The GPU figures in docs/speed.md: `dpbench bench` on a ~1.3B random LLaDA config in bf16.

Random weights: accuracy means nothing here, only speed. Two samplers, each with its
own parameters, so each is its own `run_bench` (speedups are against cache=none of the
same sampler, batch size and prompt length, measured round-robin in the same run):

- baseline: gen 256, block 32, 64 steps (4 tokens per forward);
- dparallel: its decisions depend on the model's entropies, which on random weights are
  the same at every masked position to a few decimals (measured: 11.696 nats at every
  position of a block), so any threshold but 0 commits a whole block or one token at a
  knife's edge, differently per prompt and cache mode. Threshold 0 commits exactly one
  token per forward (the lowest entropy), so every cache mode runs 256 forwards and
  the speedups compare like with like; the step's work does not depend on the threshold.
  Batch 1 by default; `--dparallel-b32` adds batch 32 (256 forwards a batch: minutes).

Batch 1 decodes fewer prompts than batch 32 (each batch-1 row still times hundreds of
forwards) so the whole run fits a short GPU session. Writes OUT/bench-gpu.json (every
run) and OUT/bench-gpu.md (the tables) after each round of each run, so a cut-off run keeps what
finished.

    python results/bench/gpu/run_gpu_bench.py OUT_DIR [--caches none,graph] [--batch-sizes 1] [--samplers dparallel]
        [--dparallel-b32] [--small]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dpbench.bench import BenchConfig, run_bench, to_markdown
from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer
from dpbench.runner import write_atomic

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--small", action="store_true", help="a CPU smoke test with a d=64 model")
    ap.add_argument("--caches", default="none,prefix,dual,dual+16,graph", help="bench --cache entries (graph: batch 1 only)")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--samplers", default="baseline,dparallel")
    ap.add_argument("--dparallel-b32", action="store_true", help="also dparallel at batch 32 (256 forwards a batch: minutes)")
    args = ap.parse_args()
    out, small = args.out, args.small
    caches = args.caches.split(",")
    out.mkdir(parents=True, exist_ok=True)
    tok = build_char_tokenizer()
    dev = "cpu" if small else "cuda"
    if small and "graph" in caches:
        caches.remove("graph")  # needs CUDA
    size = dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=128) if small else dict(
        d_model=2048, n_layers=16, n_heads=16, mlp_hidden_size=5632)
    cfg = LLaDAConfig(**size, vocab_size=126464, mask_token_id=tok.mask_token_id, rope_theta=500000.0)
    torch.manual_seed(0)
    with torch.device(dev):
        model = LLaDAModelLM(cfg).to(torch.float32 if small else torch.bfloat16).eval()
    n = sum(p.numel() for p in model.parameters())
    lm = DiffusionLM(model, mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id], name=f"random-llada-{n / 1e9:.2f}B")
    log(f"built {lm}")

    block = {"gen_length": 64, "block_length": 32} if small else {"gen_length": 256, "block_length": 32}
    base, dp = {**block, "steps": 16 if small else 64}, {**block, "threshold": 0.0}
    plan = [("baseline", base, 1, (8, 2)), ("dparallel", dp, 1, (2, 1)), ("baseline", base, 32, (32, 4))]
    if args.dparallel_b32:
        plan.append(("dparallel", dp, 32, (32, 2)))  # (sampler, params, batch size, samples: full / --small)
    sizes, names = args.batch_sizes.split(","), args.samplers.split(",")
    runs = []
    for name, params, bs, (n, n_small) in plan:
        if str(bs) not in sizes or name not in names:
            continue
        bs, n = (min(bs, 2), n_small) if small else (bs, n)  # the CPU smoke test: batch 2 for 32
        # Prompts of different lengths make padded batches, which run eagerly: no graph rows there.
        use = [c for c in caches if bs == 1 or c != "graph"]
        bench = BenchConfig(model=lm.name, samplers=[name], params=params, caches=use, batch_sizes=[bs],
                            prompt_tokens=[None, 512], samples=n)
        runs.append(run_bench(bench, lm, tok, progress=False, on_round=lambda partial: save(out, runs + [partial])))
        log(f"{name} batch {bs}: done")
        save(out, runs)
        print(to_markdown(runs[-1]), flush=True)


def save(out: Path, runs: list[dict]) -> None:
    """Every run so far (a cut-off one as its finished rounds, marked partial)."""
    write_atomic(out / "bench-gpu.json", json.dumps({"runs": runs}, indent=2, default=str) + "\n")
    write_atomic(out / "bench-gpu.md", "\n".join(to_markdown(r) for r in runs))


if __name__ == "__main__":
    main()
