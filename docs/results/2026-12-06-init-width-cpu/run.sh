#!/usr/bin/env bash
# The first measurement of issue 14: DyT with the fixed (0.02) and the width-scaled init against RMSNorm with both,
# on the tiny recipe's shape (4 layers, head_dim 32) at widths 64 and 128, with the paper's optimizer (AdamW eps 1e-8,
# betas 0.9/0.95, weight decay 0.1, alpha at the base lr 3e-3), 200 steps x 16 x 128 tokens, seeds 1 and 2.
#   bash docs/results/2026-12-06-init-width-cpu/run.sh [OUT_DIR]     (from the repository root; resumable)
# Napkin math: ~0.7-1.8M parameters, ~1e7 FLOP per token, 410K tokens per run: 1.5-5 minutes per run on 2 cores.
set -u
cd "$(dirname "$0")/../../.."
BIN=${DYTRAIN_BIN:-build/dytrain}
OUT=${1:-runs/init-width-cpu}
mkdir -p "$OUT"
for seed in 1 2; do
for w in 64 128; do
  for cfgname in dyt_fixed dyt_scaled rms_scaled rms_fixed; do
    case $cfgname in
      dyt_fixed) extra="--set model.norm=dyt --set model.init=fixed --set model.init_std=0.02" ;;
      dyt_scaled) extra="--set model.norm=dyt --set model.init=scaled --set model.init_std=0.02" ;;
      rms_scaled) extra="--set model.norm=rmsnorm --set model.init=scaled --set model.init_std=0.02" ;;
      rms_fixed) extra="--set model.norm=rmsnorm --set model.init=fixed --set model.init_std=0.02" ;;
    esac
    dir=$OUT/w${w}_${cfgname}_s${seed}
    [ -f $dir/checkpoints/step_00000200/model.safetensors ] && continue
    rm -rf $dir
    heads=$((w / 32))
    OMP_NUM_THREADS=2 nice -n 19 $BIN train configs/train/tiny.yaml --run-dir $dir \
      --set model.dim=$w --set model.n_heads=$heads --set model.n_kv_heads=$((heads > 1 ? heads / 2 : 1)) \
      --set optim.eps=1e-8 --set optim.lr=3e-3 --set optim.min_lr=3e-4 --set optim.dyt_alpha.lr=3e-3 \
      --set optim.warmup_steps=30 --set train.max_steps=200 --set train.val_every=100 --set train.log_every=10 \
      --set train.seed=$seed $extra > $dir.log 2>&1
    echo "$dir rc=$? $(date +%T)" >> $OUT/progress.txt
  done
done
done
