#!/bin/bash
# Are the semi-supervised curve points trained long enough at fewer steps? Validation accuracy
# (the 5 000 validation images of the training split: no test image) of M2 and of the fine-tuned
# VAE at n = 100 / 1 000 / 10 000 labels, seed 42, one thread each, validated every 500 steps:
#   M2: 2 000 steps (its preset) at every n, 1 500 at 100 and 10 000 (its one-cycle schedule
#       spans the run, so step 1 500 of the 2 000-step run is not a 1 500-step run);
#   fine-tuned VAE (constant rate): pretraining + fine-tuning steps 1 000 + 1 000 (its preset) and
#       500 + 500 at every n, 500 + 1 000 at 100 and 10 000.
# The curve runs themselves see no validation labels (dgbench/evaluation/curves.py, curve_jobs). A run
# already complete in OUT_DIR is kept.
#   bash benchmarks/probes/curve_steps.sh [OUT_DIR=runs/curve_steps] > results/cpu/curve_steps.md
#   TABLE_ONLY=1 bash benchmarks/probes/curve_steps.sh OUT_DIR   # the table of the runs already there
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/curve_steps}
mkdir -p "$out"
export OMP_NUM_THREADS=1
train() {  # name, overrides...
  local name=$1; shift
  [ -n "${TABLE_ONLY:-}" ] || [ -f "$out/$name/metrics.json" ] || python train.py seed=42 "~callbacks.sample_grid" \
    trainer.enable_progress_bar=false hydra.run.dir="$out/$name" "$@" > "$out/$name.log" 2>&1
}
for n in 100 1000 10000; do
  train m2_$n experiment=m2 data.label_size=$n
  train ft_${n}_2000 experiment=vae_finetuned data.label_size=$n trainer.max_steps=2000 model.pretrain_steps=1000
  train ft_${n}_1000 experiment=vae_finetuned data.label_size=$n trainer.max_steps=1000 model.pretrain_steps=500
done
for n in 100 10000; do
  train m2_${n}_1500 experiment=m2 data.label_size=$n trainer.max_steps=1500
  train ft_${n}_1500 experiment=vae_finetuned data.label_size=$n trainer.max_steps=1500 model.pretrain_steps=500
done
python - "$out" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| run | labels | validation accuracy (%) after 500 / 1 000 / 1 500 / 2 000 steps |\n|---|---|---|")
runs = (("m2_{n}", "M2, 2 000 steps (preset)"), ("m2_{n}_1500", "M2, 1 500 steps"),
        ("ft_{n}_2000", "fine-tuned VAE, 1 000 + 1 000 (preset)"), ("ft_{n}_1000", "fine-tuned VAE, 500 + 500"),
        ("ft_{n}_1500", "fine-tuned VAE, 500 + 1 000"))
for name, what in runs:
    for n in (100, 1000, 10000):
        path = out / name.format(n=n) / "csv" / "metrics.csv"
        if path.exists():
            rows = [r for r in csv.DictReader(open(path)) if r.get("val/acc")]
            accs = " / ".join(f"{100 * float(r['val/acc']):.2f}" for r in rows)
            print(f"| {what} | {n} | {accs} |")
PY
