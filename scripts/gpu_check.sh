#!/usr/bin/env bash
# One prepared GPU session: CUDA paths + the measurements the issues ask for.
# Runs from the repository root with the machine's own torch/transformers
# (PYTHONPATH=., no install). Writes logs and JSON to ${OUT:-/tmp/gpu_out}.
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
step() { echo "== $1"; shift; timeout "${STEP_TIMEOUT:-100}" "$@" 2>&1 | grep -v "it/s\]" | tail -n 40; echo "(exit ${PIPESTATUS[0]})"; }
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
step "issue 6: 1.3B random LLaDA forward, bf16 SDPA, batch 1/16" $PY scripts/measure_forward.py --batch-sizes 1,16
step "issue 2: sampler overhead and batching on CUDA (d=1024, 8 layers, vocab 32k)" $PY scripts/measure_core.py --device cuda --d-model 1024 --n-layers 8 --vocab 32000 --repeats 2
step "CUDA end to end: tiny-arith dparallel on 500 arith problems" $PY -m dpbench run arith --model tiny-arith --sampler dparallel --batch-size 100 --out "$OUT/run-dp" --device cuda
step "CUDA end to end: tiny-arith baseline on 500 arith problems" $PY -m dpbench run arith --model tiny-arith --sampler baseline --batch-size 100 --out "$OUT/run-base" --device cuda
STEP_TIMEOUT=300 step "issue 7: dpbench bench, 1.3B random LLaDA bf16, cache none/prefix/dual/dual+16, batch 1/32" $PY results/bench/gpu/run_gpu_bench.py "$OUT/bench-gpu"
step "issue 7: output head on the decoded blocks only, 1.3B layout" $PY scripts/measure_logits_range.py --device cuda --d-model 2048 --n-layers 16 --mlp 5632 --dtype bf16 --gen 256 --block 32 --samples 32 --batch-sizes 1,32
if [ -f scripts/gpu_extra.sh ]; then step "extra" bash scripts/gpu_extra.sh; fi
} 2>&1 | tee "$OUT/gpu_check.log"
