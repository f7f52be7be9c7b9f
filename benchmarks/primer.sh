#!/usr/bin/env bash
# Train every family with its preset, then evaluate all of them side by side.
# This is the command behind results/primer/ (see results/README.md for the exact budgets used).
#   bash benchmarks/primer.sh                 # ACC=gpu on a GPU machine (bf16), ACC=cpu to force the CPU
# Budgets below are CPU-sized; the diffusion knobs trade accuracy for evaluation time on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ACC=${ACC:-auto}
RUNS=${RUNS:-runs/primer}
OUT=${OUT:-results/primer}
EXPERIMENTS=${EXPERIMENTS:-"resnet_fast vae_cpu gan_cpu diffusion_cpu"}
ckpts=()
for exp in $EXPERIMENTS; do
  echo "[primer] $(date +%T) training $exp"
  python train.py experiment="$exp" trainer.accelerator="$ACC" trainer.enable_progress_bar=false hydra.run.dir="$RUNS/$exp"
  ckpts+=("$RUNS/$exp")
done
echo "[primer] $(date +%T) evaluating"
python evaluate.py ckpts="[$(IFS=,; echo "${ckpts[*]}")]" hydra.run.dir="$OUT" \
  budget.classification=500 budget.ood=300 budget.missing=100 budget.samples=500 budget.cost=50 batch_size=250 \
  +inference.classify_pairs=10 +inference.likelihood_timesteps=20 +inference.impute_steps=20 \
  +inference.impute_resample=1 +inference.recon_steps=5 "$@"
