"""What computing logits for the decoded blocks only saves, side by side in one run.

dpbench's samplers ask the native models for the logits of the active blocks'
span (`DiffusionLM.logits(positions=...)`), so the output head (d x V, the
largest matrix at LLaDA's 126k vocabulary) runs on block_length positions, not
on prompt + answer. This decodes the same prompts with a random LLaDA-layout
model twice per batch size, once as dpbench does and once with the head on
every position (the reference implementations' way), interleaved after a
warm-up, and reports seconds per sample, the logits tensor of one forward and
the peak memory (CUDA max allocated; CPU peak RSS).

    python scripts/measure_logits_range.py --vocab 126464 --d-model 256 --n-layers 2 --threads 1
    python scripts/measure_logits_range.py --d-model 2048 --n-layers 16 --mlp 5632 --dtype bf16 --gen 256 --block 32  # GPU
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from dpbench.bench import _peak_mb, _reset_peak
from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM
from dpbench.models.llada import count_parameters
from dpbench.samplers import get_sampler


class FullHeadLM(DiffusionLM):
    """The same model, but every forward computes the logits of every position (then sliced)."""

    @property
    def supports_logits_range(self) -> bool:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--mlp", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=126464)
    ap.add_argument("--prompt", type=int, default=25)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--steps-per-block", type=int, default=4)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--samples", type=int, default=8, help="prompts decoded per variant and batch size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=max(1, args.d_model // 64),
                      mlp_hidden_size=args.mlp, vocab_size=args.vocab, mask_token_id=args.vocab - 128)
    with torch.device(dev):
        model = LLaDAModelLM(cfg).to({"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]).eval()
    kw = dict(mask_id=cfg.mask_token_id, eos_token_ids=[args.vocab - 129])
    variants = {"blocks only": DiffusionLM(model, **kw), "every position": FullHeadLM(model, **kw)}
    steps = args.steps_per_block * args.gen // args.block
    smp = get_sampler("baseline", gen_length=args.gen, block_length=args.block, steps=steps)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    result = {"params": count_parameters(model), "vocab": args.vocab, "device": str(dev), "dtype": args.dtype,
              "threads": torch.get_num_threads(), "prompt": args.prompt, "gen": args.gen, "block": args.block,
              "nfe": steps, "rows": []}
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        prompts = torch.randint(0, args.vocab - 200, (args.samples, args.prompt), device=dev)
        for lm in variants.values():  # warm-up
            smp.generate(lm, prompts[:bs])
        seconds = dict.fromkeys(variants, 0.0)
        peak = dict.fromkeys(variants, 0.0)
        same = True
        for i in range(0, args.samples, bs):
            outs = []
            for name, lm in variants.items():
                _reset_peak(dev)
                sync()
                t0 = time.perf_counter()
                outs.append(smp.generate(lm, prompts[i : i + bs]).sequences)
                sync()
                seconds[name] += time.perf_counter() - t0
                peak[name] = max(peak[name], _peak_mb(dev))
            same &= torch.equal(outs[0], outs[1])
        n_pos = args.prompt + args.gen
        for name in variants:
            rows = args.block if name == "blocks only" else n_pos
            result["rows"].append({
                "batch": bs, "logits": name, "s_per_sample": round(seconds[name] / args.samples, 4),
                "logits_mb_per_forward": round(bs * rows * args.vocab * 4 / 2**20, 1),  # the float32 copy the sampler reads
                "peak_mb": round(peak[name], 1),
            })
        result["rows"][-2]["speedup"] = round(seconds["every position"] / seconds["blocks only"], 2)
        result["rows"][-2]["same_tokens"] = bool(same)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
