"""Peak memory while loading a sharded LLaDA-layout checkpoint, against its size on disk.

    python scripts/measure_load_rss.py [--d-model 1024 --n-layers 8 --vocab 32768 --shard-mb 64]

Writes a random bf16 checkpoint in the published layout (config.json, several
safetensors shards, model.safetensors.index.json) to a temp directory, then loads
it in a fresh subprocess per case and reports, in MB:

- peak ``ru_maxrss`` minus the RSS right after the imports (the baseline);
- the sampled peak RSS, and peak anonymous RSS (RssAnon: real allocations) and peak
  file-backed RSS (RssFile: pages of the mmap'd shards, which the kernel can drop)
  above the same baseline, sampled every 2 ms from /proc/self/status (Linux only);
- RSS after the load, once every parameter has been read (so lazily mmap'd weights
  count as resident, as they are after a first forward).

Cases: ``load_model`` into bf16 (the disk dtype), into fp32 (a 2x upcast, so ~2x
the disk size is the floor), and a naive load for contrast (build the model with
random weights, then ``load_state_dict`` each shard).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import gc, json, resource, sys, threading, time
import torch
from safetensors.torch import load_file
from dpbench.models import LLaDAConfig, LLaDAModelLM, load_model

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) / 1024  # kB -> MB
    return out

path, case = sys.argv[1], sys.argv[2]
gc.collect()
base_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = status()
peak = dict(base)
stop = False

def sample():
    while not stop:
        for k, v in status().items():
            peak[k] = max(peak[k], v)
        time.sleep(0.002)

t = threading.Thread(target=sample, daemon=True)
t.start()
t0 = time.perf_counter()
if case == "naive":
    cfg = LLaDAConfig.from_pretrained(path)
    model = LLaDAModelLM(cfg).to(torch.bfloat16)
    for shard in sorted(set(json.load(open(path + "/model.safetensors.index.json"))["weight_map"].values())):
        model.load_state_dict(load_file(path + "/" + shard), strict=False)
else:
    lm, _ = load_model(path, device="cpu", dtype=case)
    model = lm.module
secs = time.perf_counter() - t0
# Parameters may still be lazy views of the mmap'd shards: touch every one so the
# numbers include the weights actually being resident, as after a first forward.
with torch.no_grad():
    for p in model.parameters():
        p.sum()
stop = True
t.join()
after = status()
dtypes = sorted({str(p.dtype) for p in model.parameters()})
print(json.dumps({
    "case": case, "seconds": secs, "dtypes": dtypes,
    "import_maxrss_mb": base_max - base["VmRSS"],
    "peak_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base["VmRSS"],
    "peak_rss_mb": peak["VmRSS"] - base["VmRSS"],
    "peak_anon_mb": peak["RssAnon"] - base["RssAnon"],
    "peak_file_mb": peak["RssFile"] - base["RssFile"],
    "after_rss_mb": after["VmRSS"] - base["VmRSS"],
}))
"""


def write_checkpoint(path: Path, d: int, n_layers: int, vocab: int, shard_mb: int) -> None:
    """Random bf16 weights under LLaDA's published names, shard by shard."""
    import torch
    from safetensors.torch import save_file

    from dpbench.models import build_char_tokenizer

    heads, ffn = max(1, d // 64), int(d * 2.75) // 64 * 64
    config = {"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": d, "n_layers": n_layers,
              "n_heads": heads, "n_kv_heads": heads, "mlp_hidden_size": ffn, "vocab_size": vocab,
              "embedding_size": vocab, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "weight_tying": False,
              "block_type": "llama", "mask_token_id": 2, "eos_token_id": 1, "max_sequence_length": 4096}
    shapes = {"model.transformer.wte.weight": (vocab, d)}
    for i in range(n_layers):
        p = f"model.transformer.blocks.{i}."
        shapes |= {p + "attn_norm.weight": (d,), p + "q_proj.weight": (d, d), p + "k_proj.weight": (d, d),
                   p + "v_proj.weight": (d, d), p + "attn_out.weight": (d, d), p + "ff_norm.weight": (d,),
                   p + "ff_proj.weight": (ffn, d), p + "up_proj.weight": (ffn, d), p + "ff_out.weight": (d, ffn)}
    shapes |= {"model.transformer.ln_f.weight": (d,), "model.transformer.ff_out.weight": (vocab, d)}

    # Group tensors into shards of about shard_mb (as save_pretrained does), then write each.
    groups, cur, size = [], [], 0
    for name, shape in shapes.items():
        nbytes = 2 * int(torch.Size(shape).numel())
        if cur and size + nbytes > shard_mb * 2**20:
            groups.append(cur)
            cur, size = [], 0
        cur.append(name)
        size += nbytes
    groups.append(cur)
    weight_map, total = {}, 0  # total: tensor bytes, as save_pretrained records it
    g = torch.Generator().manual_seed(0)
    for i, names in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: (0.02 * torch.randn(shapes[n], generator=g)).to(torch.bfloat16) for n in names}
        save_file(tensors, str(path / shard), metadata={"format": "pt"})
        weight_map |= {n: shard for n in names}
        total += sum(t.numel() * 2 for t in tensors.values())
    (path / "config.json").write_text(json.dumps(config))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    build_char_tokenizer().save_pretrained(str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=1024)
    ap.add_argument("--n-layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--cases", default="bf16,fp32,naive", help="comma-separated: bf16, fp32, naive")
    ap.add_argument("--write-only", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write_only:
        write_checkpoint(Path(args.write_only), args.d_model, args.n_layers, args.vocab, args.shard_mb)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        # Write the checkpoint in a subprocess too: Linux carries ru_maxrss over fork+exec, so a
        # parent that had held the weights would leak its peak into every child's numbers.
        sizes = ["--d-model", str(args.d_model), "--n-layers", str(args.n_layers), "--vocab", str(args.vocab),
                 "--shard-mb", str(args.shard_mb)]
        subprocess.run([sys.executable, __file__, *sizes, "--write-only", tmp], check=True)
        disk = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        n_shards = len(list(path.glob("*.safetensors")))
        print(f"checkpoint: {disk / 2**20:.0f} MB on disk (bf16), {n_shards} shards, {path}")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        for case in args.cases.split(","):
            cmd = [sys.executable, "-c", CHILD, str(path), case]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode:
                raise SystemExit(f"{case} failed:\n{out.stderr[-2000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peak = r["peak_maxrss_mb"]
            print(
                f"{case:>5}: peak ru_maxrss +{peak:.0f} MB = {peak * 2**20 / disk:.2f}x disk "
                f"(sampled: anon +{r['peak_anon_mb']:.0f}, file-backed +{r['peak_file_mb']:.0f}); "
                f"after load +{r['after_rss_mb']:.0f} MB; {','.join(r['dtypes'])}; {r['seconds']:.1f}s"
            )
            if r["import_maxrss_mb"] > 1:
                print(f"       (ru_maxrss was already {r['import_maxrss_mb']:.0f} MB above the baseline after imports)")

if __name__ == "__main__":
    main()
