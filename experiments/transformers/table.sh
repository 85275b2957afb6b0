#!/usr/bin/env bash
# The reduced-scale table of experiments/transformers/README.md: four methods x 3 seeds on each
# transformer space (ViT on digits, GPT on the embedded text), each found architecture evaluated
# with the supernet's weights (inherit, no retraining) and after a short retrain, beside random
# architectures of the same space retrained with the same recipe.
#   bash experiments/transformers/table.sh [out_dir]     (CPU: about 25 minutes on 2 cores)
set -euo pipefail
OUT=${1:-outputs/transformers_table}
run() { python train.py "$@" logger=csv; }
run -m search_space=vit strategy=darts,gdas,drnas,spos seed=0,1,2 retrain.epochs=10 \
    hydra.sweep.dir="$OUT/vit"
run -m search_space=gpt data=text strategy=darts,gdas,drnas,spos seed=0,1,2 \
    hydra.sweep.dir="$OUT/gpt"
# Inherited weights: each search's supernet, the child evaluated without training.
for space in vit gpt; do
  data=$([ "$space" = gpt ] && echo data=text || echo data=digits)
  for job in "$OUT/$space"/[0-9]*; do
    strategy=$(python -c "import yaml; print(yaml.safe_load(open('$job/.hydra/config.yaml'))['strategy']['name'])")
    seed=$(python -c "import yaml; print(yaml.safe_load(open('$job/.hydra/config.yaml'))['seed'])")
    run stage=retrain search_space=$space $data strategy=$strategy seed=$seed \
        genotype="$job/genotype.json" retrain.inherit=true retrain.epochs=0 \
        retrain.supernet_checkpoint="$job/checkpoints/search/last.ckpt" \
        hydra.run.dir="$job/inherited"
  done
done
# Random architectures (3 per space), retrained with the same recipe as the found ones.
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
import torch
from supernet.spaces import build_space
out = Path(sys.argv[1])
spaces = {"vit": build_space("vit", (1, 8, 8), 10, C=8, layers=3),
          "gpt": build_space("gpt", [64], 256, n_embd=[32, 64], n_layer=[1, 2], n_head=[2, 4],
                             intermediate_size=[64, 128], head_size=16)}
for name, space in spaces.items():
    g = torch.Generator().manual_seed(2026)
    for i in range(3):
        d = out / f"{name}_random" / str(i)
        d.mkdir(parents=True, exist_ok=True)
        (d / "genotype.json").write_text(json.dumps(space.random_genotype(g).to_dict()))
PY
for i in 0 1 2; do
  run stage=retrain search_space=vit genotype="$OUT/vit_random/$i/genotype.json" retrain.epochs=10 \
      seed=$i hydra.run.dir="$OUT/vit_random/$i/run"
  run stage=retrain search_space=gpt data=text genotype="$OUT/gpt_random/$i/genotype.json" \
      seed=$i hydra.run.dir="$OUT/gpt_random/$i/run"
done
