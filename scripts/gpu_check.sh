#!/usr/bin/env bash
# One prepared GPU session: the measurements the issues ask for, then CUDA-path checks.
# Runs from the repository root with the machine's own torch/transformers (PYTHONPATH=.,
# no install) in ~6 minutes on an H200. Writes at most 6 files to ${OUT:-/tmp/gpu_out}
# (the device tool returns 8): the log, the bench JSON and table, the CUDA-graph and
# output-head measurements, and the tiny-model CUDA runs (compare them with CPU runs of
# the same commands: `dpbench run arith ... --limit 200 --batch-size 100 --dtype fp32`).
set -u
OUT=${OUT:-/tmp/gpu_out}; RUNS=/tmp/gpu_runs; mkdir -p "$OUT" "$RUNS"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PY:-python3}
# step NAME TIMEOUT OUTFILE|- CMD...: full output to OUTFILE (if given), its tail to the log.
step() {
  local name=$1 limit=$2 file=$3; shift 3
  echo "== $name ($(date +%T))"
  if [ "$file" = - ]; then file=$(mktemp); fi
  timeout "$limit" "$@" >"$file" 2>&1; local rc=$?
  grep -v "it/s\]" "$file" | tail -n 45; echo "(exit $rc)"
}
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
step "issue 7: dpbench bench, 1.3B random LLaDA bf16, cache none/prefix/dual/dual+16/graph" 330 - \
  $PY results/bench/gpu/run_gpu_bench.py "$OUT"
step "issue 7: CUDA graphs at batch 1 (forward, sampler step), 1.3B layout" 100 "$OUT/cuda_graphs.txt" \
  $PY scripts/measure_cuda_graphs.py --iters 15 --rounds 3
for spec in "dparallel none" "dparallel dual16 -p cache=dual -p dual_lookahead=16" "baseline none"; do
  set -- $spec
  step "CUDA end to end: tiny-arith $1 $2, fp32, 200 arith problems" 60 - \
    $PY -m dpbench run arith --model tiny-arith --sampler "$1" "${@:3}" --limit 200 --batch-size 100 \
    --device cuda --dtype fp32 --out "$RUNS/$1-$2"
done
for g in false true; do
  step "CUDA graphs: tiny-arith dparallel cuda_graph=$g, batch 1, fp32, 100 problems" 60 - \
    $PY -m dpbench run arith --model tiny-arith --sampler dparallel -p cuda_graph=$g --limit 100 --batch-size 1 \
    --device cuda --dtype fp32 --out "$RUNS/graph-$g"
done
$PY -m dpbench compare "$RUNS/graph-false" "$RUNS/graph-true"
tar -czf "$OUT/tiny_cuda_runs.tar.gz" -C "$RUNS" .
step "issue 7: output head on the decoded blocks only, 1.3B layout" 60 "$OUT/logits_range.txt" \
  $PY scripts/measure_logits_range.py --device cuda --d-model 2048 --n-layers 16 --mlp 5632 --dtype bf16 \
  --gen 256 --block 32 --samples 8 --batch-sizes 1,8
echo "== done ($(date +%T))"
} 2>&1 | tee "$OUT/gpu_check.log"
