"""Issue-2 measurements: per-step sampler overhead vs one forward, and batched vs one-at-a-time.

    python scripts/measure_core.py [--d-model 256 --n-layers 4 --vocab 0]

Overhead = generate() wall-clock minus the time spent inside the model forward,
divided by the number of steps; reported as a fraction of one forward at the
same batch size. Seeded, warmed up, timed with perf_counter (CPU: no sync needed;
on CUDA each timed region is synchronized).
"""

from __future__ import annotations

import argparse
import time

import torch

from dpbench.bench import ForwardTimer
from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer
from dpbench.samplers import get_sampler


def build(d_model: int, n_layers: int, vocab: int, device: str) -> tuple[DiffusionLM, object]:
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=d_model, n_layers=n_layers, n_heads=max(1, d_model // 64), mlp_hidden_size=4 * d_model,
                      vocab_size=max(vocab, len(tok)), mask_token_id=tok.mask_token_id)
    model = LLaDAModelLM(cfg).eval().to(device)
    with torch.no_grad():
        model.model.transformer.ff_out.weight.mul_(60.0)  # confident enough for thresholds to bite
    return DiffusionLM(model, mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id]), tok


def timed_generate(timer: ForwardTimer, smp, ids, mask=None) -> tuple[float, float, int]:
    """(wall-clock, seconds inside the forward, forward calls) of one generate call."""
    f_s, f_n = timer.seconds, timer.calls
    t0 = time.perf_counter()
    smp.generate(timer.lm, ids, mask)
    if timer.lm.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, timer.seconds - f_s, timer.calls - f_n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=0, help="0 = the char tokenizer's vocabulary")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    lm, tok = build(args.d_model, args.n_layers, args.vocab, args.device)
    with ForwardTimer(lm).active() as timer:
        measure(timer, tok, args)


def measure(timer: ForwardTimer, tok, args) -> None:
    lm = timer.lm
    vocab = lm.module.config.embedding_size
    print(f"model d={args.d_model} layers={args.n_layers} vocab={vocab} device={args.device} threads={torch.get_num_threads()}")
    prompts = [f"Q{i}: what is {i} + {3 * i + 7} + {i * i}? " * (1 + i % 3) for i in range(16)]
    smp = get_sampler("dparallel", gen_length=64, block_length=16, threshold=0.5)
    base = get_sampler("baseline", gen_length=64, block_length=16, steps=64)

    for bs in (1, 16):
        enc = tok(prompts[:bs], return_tensors="pt", padding=True, add_special_tokens=False).to(args.device)
        timed_generate(timer, base, enc.input_ids, enc.attention_mask)  # warm-up
        best = None
        for _ in range(args.repeats):
            total, fwd, calls = timed_generate(timer, base, enc.input_ids, enc.attention_mask)
            best = min(best or (9e9,), (total, fwd, calls))
        total, fwd, calls = best
        per_fwd, per_step_over = fwd / calls, (total - fwd) / calls
        print(f"baseline batch={bs:2d}: {calls} steps, forward {per_fwd * 1e3:.2f} ms, sampler overhead/step "
              f"{per_step_over * 1e3:.3f} ms = {per_step_over / per_fwd:.1%} of a forward ({(total - fwd) / total:.1%} of wall-clock)")

    similar = [f"Q{i}: what is {i} + {3 * i + 7} + {i * i}? " * 2 for i in range(16)]
    for label, group in (("similar lengths", similar), ("lengths 1x-3x", prompts)):
        enc = tok(group, return_tensors="pt", padding=True, add_special_tokens=False).to(args.device)
        singles = [tok(p, return_tensors="pt", add_special_tokens=False).input_ids.to(args.device) for p in group]
        timed_generate(timer, smp, enc.input_ids, enc.attention_mask)
        batched = min(timed_generate(timer, smp, enc.input_ids, enc.attention_mask)[0] for _ in range(args.repeats))
        one_by_one = min(sum(timed_generate(timer, smp, ids)[0] for ids in singles) for _ in range(args.repeats))
        print(f"dparallel 16 prompts ({label}): one batch {batched:.3f} s, one at a time {one_by_one:.3f} s, "
              f"speedup {one_by_one / batched:.2f}x")


if __name__ == "__main__":
    main()
