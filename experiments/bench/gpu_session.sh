#!/usr/bin/env bash
# The GPU measurements still missing, in parts that each fit a 10-minute device call:
#
#   bash experiments/bench/gpu_session.sh check      # GPU tests: Triton kernel, lean step (DrNAS draws on the device), compile, cuda_graph
#   bash experiments/bench/gpu_session.sh wholegraph # search step, cuda_graph=true: fp32 first + PC-DARTS, bf16 first, edge-compiled first
#   bash experiments/bench/gpu_session.sh kernel     # mixed-op kernel on channel slices (group_edges' layout), fp32 + bf16
#   bash experiments/bench/gpu_session.sh eager      # search step, eager + Triton kernel: grouped edges (default) and per edge
#   bash experiments/bench/gpu_session.sh edge       # search step, compile_scope=edge, default mode (first + second order)
#   bash experiments/bench/gpu_session.sh graphs     # search step, compile_scope=edge, CUDA graphs (reduce-overhead)
#   bash experiments/bench/gpu_session.sh sampling   # GDAS and PC-DARTS at their papers' batches, compiled
#
# Results go to experiments/bench/results/*_cuda_*.json (device name inside); the tables print.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
BENCH="$PY experiments/bench/search_step.py --device cuda --kernel triton --steps 5 --warmup 3"
R=experiments/bench/results

case "${1:-}" in
  check)
    $PY -m pytest -q tests/test_triton_mix.py tests/test_lean_step.py tests/test_cuda_graphs.py -m "not slow or slow" ;;
  wholegraph)
    $BENCH --batch 64 --modes first,pcdarts --cuda-graph --out $R/search_step_cuda_cudagraph.json
    $BENCH --batch 64 --modes first --cuda-graph --bf16 --out $R/search_step_cuda_cudagraph_bf16.json
    $BENCH --batch 64 --modes first --cuda-graph --compile --compile-scope edge \
      --out $R/search_step_cuda_cudagraph_compiled_edge.json ;;
  kernel)
    $PY experiments/bench/mixed_op.py --device cuda --layout sliced
    $PY experiments/bench/mixed_op.py --device cuda --layout sliced --dtype bfloat16 ;;
  eager)
    $BENCH --batch 64 --modes first,second --out $R/search_step_cuda_triton_grouped.json
    $BENCH --batch 64 --modes first --no-group-edges --out $R/search_step_cuda_triton_per_edge.json ;;
  edge)
    $BENCH --batch 64 --modes first,second --compile --compile-scope edge \
      --out $R/search_step_cuda_compiled_edge.json ;;
  graphs)
    $BENCH --batch 64 --modes first --compile --compile-scope edge --compile-mode reduce-overhead \
      --out $R/search_step_cuda_compiled_edge_cudagraphs.json ;;
  sampling)
    $BENCH --modes gdas,pcdarts --compile --compile-scope edge \
      --out $R/search_step_cuda_gdas_pcdarts_compiled_edge.json ;;
  *)
    echo "usage: $0 check|wholegraph|kernel|eager|edge|graphs|sampling" >&2
    exit 2 ;;
esac
