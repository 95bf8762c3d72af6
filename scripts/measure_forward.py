"""Forward time of a random LLaDA-architecture model (default ~1.3B params) in bf16 with SDPA.

    python scripts/measure_forward.py --batch-sizes 1,16 --seq-len 384

Seeded, warmed up, CUDA-synchronized, median of --repeats timed forwards.
Left-padded batches exercise the padding-mask path of SDPA as real runs do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dpbench.models import LLaDAConfig, LLaDAModelLM
from dpbench.models.llada import count_parameters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--n-layers", type=int, default=16)
    ap.add_argument("--n-heads", type=int, default=16)
    ap.add_argument("--mlp", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=126464)
    ap.add_argument("--seq-len", type=int, default=384, help="prompt + answer positions per sequence")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16")
    args = ap.parse_args()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, mlp_hidden_size=args.mlp,
                      vocab_size=args.vocab, mask_token_id=args.vocab - 128)
    with torch.device(args.device):
        model = LLaDAModelLM(cfg).to(dtype).eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    result = {"params": count_parameters(model), "dtype": args.dtype, "device": args.device, "seq_len": args.seq_len,
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None, "forward_ms": {}}
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        ids = torch.randint(0, args.vocab - 200, (bs, args.seq_len), device=args.device)
        mask = torch.ones_like(ids)
        mask[1:, : args.seq_len // 8] = 0  # left padding on all rows but the first
        times = []
        with torch.inference_mode():
            for i in range(args.repeats + 3):
                sync()
                t0 = time.perf_counter()
                model(ids, attention_mask=mask if bs > 1 else None)
                sync()
                if i >= 3:
                    times.append(time.perf_counter() - t0)
        result["forward_ms"][bs] = round(1000 * statistics.median(times), 2)
    if args.device.startswith("cuda"):
        result["max_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
