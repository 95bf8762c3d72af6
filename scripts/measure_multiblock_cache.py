"""Accuracy cost of `multiblock`'s delayed cache (cache=prefix) on arith: the table in docs/speed.md.

Decodes the 500 arith test problems with the shipped teacher under each cache setting (greedy,
fp32, batch 50, the task's gen 64 / block 16, early stop on) and prints accuracy, NFE, forward
tokens (query positions run) per sample and the share of completions identical to cache=none.

    python scripts/measure_multiblock_cache.py --threads 1
"""

from __future__ import annotations

import argparse

import torch

from dpbench.models import load_model
from dpbench.samplers import build_sampler
from dpbench.tasks import get_task
from dpbench.textutil import decode_answers

SETTINGS = [("cache=none", {}), ("cache=prefix, cache_delay=0", {"cache": "prefix", "cache_delay": 0}),
            ("cache=prefix, cache_delay=1", {"cache": "prefix", "cache_delay": 1}),
            ("cache=prefix, cache_delay=2", {"cache": "prefix", "cache_delay": 2}),
            ("cache=prefix, cache_delay=2, refresh_interval=3", {"cache": "prefix", "cache_delay": 2, "refresh_interval": 3})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="tiny-arith")
    ap.add_argument("--limit", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm, tok = load_model(args.model, device="cpu", dtype="fp32")
    task = get_task("arith")
    docs = task.docs("test", limit=args.limit)
    base = None
    print("| multiblock | accuracy | NFE | forward tokens / sample | same text as none |\n|---|---|---|---|---|")
    for label, params in SETTINGS:
        smp = build_sampler("multiblock", {**params, "early_stop": True}, task=task)
        texts, nfe, ftok, correct = [], 0, 0, 0
        for i in range(0, len(docs), 50):
            part = docs[i : i + 50]
            enc = tok([task.build_prompt(d, tok) for d in part], return_tensors="pt", padding=True, padding_side="left",
                      add_special_tokens=False)
            out = smp.generate(lm, enc.input_ids, enc.attention_mask)
            got, _ = decode_answers(tok, out.answers, lm.eos_token_ids)
            texts += got
            nfe, ftok = nfe + int(out.nfe.sum()), ftok + int(out.forward_tokens.sum())
            correct += sum(task.score(d, t).correct for d, t in zip(part, got))
        base = base or texts
        n = len(docs)
        same = sum(a == b for a, b in zip(texts, base))
        print(f"| `{label}` | {100 * correct / n:.1f}% | {nfe / n:.2f} | {ftok / n:.0f} | {100 * same / n:.1f}% |")


if __name__ == "__main__":
    main()
