"""The GPU figures in docs/speed.md: `dpbench bench` on a ~1.3B random LLaDA config in bf16.

Random weights: accuracy means nothing here, only speed. Run from the repository root:
    python results/bench/gpu/run_gpu_bench.py OUT_DIR [--small]   (--small: a CPU smoke test)
"""

import sys

import torch

from dpbench.bench import BenchConfig, run_bench, to_markdown, write_results
from dpbench.models import DiffusionLM, LLaDAConfig, LLaDAModelLM, build_char_tokenizer

out, small = sys.argv[1], "--small" in sys.argv
tok = build_char_tokenizer()
dev = "cpu" if small else "cuda"
size = dict(d_model=64, n_layers=2, n_heads=4, mlp_hidden_size=128) if small else dict(
    d_model=2048, n_layers=16, n_heads=16, mlp_hidden_size=5632)
cfg = LLaDAConfig(**size, vocab_size=126464, mask_token_id=tok.mask_token_id, rope_theta=500000.0)
torch.manual_seed(0)
with torch.device(dev):
    model = LLaDAModelLM(cfg).to(torch.float32 if small else torch.bfloat16).eval()
n = sum(p.numel() for p in model.parameters())
lm = DiffusionLM(model, mask_id=tok.mask_token_id, eos_token_ids=[tok.eos_token_id], name=f"random-llada-{n / 1e9:.2f}B")
bench = BenchConfig(
    model=lm.name, samplers=["baseline"], params={"gen_length": 256, "block_length": 32, "steps": 64},
    caches=["none", "prefix", "dual", "dual+16"], batch_sizes=[1, 32], prompt_tokens=[None, 512],
    samples=4 if small else 32,
)
if small:
    bench.batch_sizes, bench.params = [1, 2], {"gen_length": 64, "block_length": 32, "steps": 16}
result = run_bench(bench, lm, tok, progress=False)
write_results(result, out)
print(to_markdown(result))
