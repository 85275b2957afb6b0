#!/usr/bin/env bash
# The accuracy-vs-latency front at reduced scale, as measured for experiments/fbnet/README.md:
# FBNet's sampler on the mbconv chain (cifar layout) on scikit-learn's 8x8 digits, the additive
# latency penalty λ · E[latency in ms] swept over λ, 2 seeds, 10 search + 10 retrain epochs.
# The latency table is timed once on this machine first (stage=latency), so every job prices
# ops alike. The multirun collects itself when its last job ends (pareto_latency_ms.png,
# results.md, accuracy_vs_params.png; a W&B collect run, offline, under the sweep directory).
# About 10 minutes on 2 CPU cores. Usage: bash experiments/fbnet/run_latency_pareto.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-multirun/fbnet_latency_pareto}
python train.py stage=latency search_space=mbconv data=digits threads=1 logger=none \
    hydra.run.dir="$out/latency"
python train.py -m +sweep=latency_pareto data=digits threads=1 \
    costs.latency_table="$out/latency/latency_table.json" \
    trainer.max_epochs=10 retrain.epochs=10 \
    strategy.regularizers.0.weight=0,0.3,1,3,10 seed=0,1 \
    hydra.sweep.dir="$out/sweep"
