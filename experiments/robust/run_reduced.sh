#!/usr/bin/env bash
# The reduced-scale robustness table of experiments/robust/README.md, measured on a CPU:
# DARTS and the methods against its collapse, 3 seeds each, a short search of the NAS-Bench-201
# space on the embedded digits (8x8, no download), with the skip count, the final α entropy and
# the Hessian eigenvalue at the end; then the table (results.md / .csv / .png in OUT).
#
#   bash experiments/robust/run_reduced.sh [OUT]      # OUT defaults to multirun/robust_reduced
#
# Reduced scale, the same for every method: C=8 and one cell per stage (the benchmark: C=16,
# N=5), batch 32, 30 epochs (P-DARTS: three stages of 10, one to three cells per stage), α Adam
# lr 3e-3 for all (the papers' 3e-4 ×10: 660 α steps here against ~19,500 on CIFAR-10);
# β-DARTS' λ ramps to 50 over the run's 30 epochs (its NB201 script: over 100); DARTS-PT tunes
# 2 epochs between decisions. Everything else is each strategy's config. SEEDS=0 for one seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-multirun/robust_reduced}
seeds=${SEEDS:-0,1,2}
common=(stage=search data=digits search_space=nb201 search_space.C=8 search_space.layers=1
        strategy.batch_size=32 trainer.max_epochs=30 strategy.arch_optimizer.lr=3e-3
        diagnostics.hessian_every=1000 logger=csv "seed=$seeds")
run() { python train.py -m "${common[@]}" "$@"; }

run hydra.sweep.dir="$out/methods" strategy=darts,fairdarts,darts_minus,sdarts_rs,sdarts_adv
run hydra.sweep.dir="$out/beta_darts" strategy=beta_darts strategy.regularizers.0.ramp_epochs=null
run hydra.sweep.dir="$out/darts_pt" strategy=darts selection=pt selection.tune_epochs=2
run hydra.sweep.dir="$out/pdarts" strategy=pdarts strategy.arch_start_epoch=4 \
    'strategy.stages=[{layers:1,epochs:10,keep:3,skip_dropout:0.1},{layers:2,epochs:10,keep:2,skip_dropout:0.4},{layers:3,epochs:10,skip_dropout:0.7}]'
python -m nas.report.collect "$out" --metric search_val_acc
