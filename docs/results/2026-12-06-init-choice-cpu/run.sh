#!/usr/bin/env bash
# Issue 14, second measurement: which width-aware init, and DyT against RMSNorm at widths 64, 128 and 256.
#   bash docs/results/2026-12-06-init-choice-cpu/run.sh [OUT_DIR] [QUEUE]   (from the repository root; resumable)
# Every run: the tiny recipe's data and shape (4 layers, head_dim 32, GQA 2:1, FFN by LLaMA's rule) at width W, the
# paper's optimizer (AdamW eps 1e-8, betas 0.9/0.95, weight decay 0.1 on the matrices and the embedding, alpha at the
# base lr), peak lr 3e-3 to 3e-4 by cosine after 30 warmup steps, 200 steps x 16 x 128 tokens, validation on
# 8 x 16 x 128 held-out tokens. Two runs at a time, one thread each (bit-identical to any thread count).
# Cost on 2 cores: ~2 / 4.5 / 14 core-minutes per run at width 64 / 128 / 256.
# QUEUE lines: "<recipe> <width> <seed> [--set ...]"; the default queue is this study's (below).
set -u
cd "$(dirname "$0")/../../.."
BIN=${DYTRAIN_BIN:-build/dytrain}
OUT=${1:-runs/init-choice-cpu}
QUEUE=${2:-}
mkdir -p "$OUT"
run_one() {
  local name=$1 w=$2 seed=$3; shift 3
  local dir=$OUT/w${w}_${name}_s${seed} heads=$((w / 32))
  [ -f "$dir/checkpoints/step_00000200/model.safetensors" ] && return
  rm -rf "$dir"
  OMP_NUM_THREADS=1 "$BIN" train configs/train/tiny.yaml --run-dir "$dir" \
    --set model.dim=$w --set model.n_heads=$heads --set model.n_kv_heads=$((heads > 1 ? heads / 2 : 1)) \
    --set optim.eps=1e-8 --set optim.lr=3e-3 --set optim.min_lr=3e-4 --set optim.dyt_alpha.lr=3e-3 \
    --set optim.warmup_steps=30 --set train.max_steps=200 --set train.val_every=100 --set train.log_every=10 \
    --set train.seed=$seed "$@" > "$dir.log" 2>&1
  echo "$dir rc=$? $(date +%T)" >> "$OUT/progress.txt"
}
export -f run_one; export OUT BIN
study() {
  local fixed="--set model.init=fixed" depth="--set model.init=scaled_depth" rms="--set model.norm=rmsnorm"
  local scaled="--set model.init=scaled"
  local a05="--set model.alpha_attn=0.5 --set model.alpha_ffn=0.5 --set model.alpha_final=0.5"
  # The init at width 128, seed 1. init_std is the std at fan-in 4096 (default 0.02): `scaled` keeps
  # std x sqrt(fan_in) = init_std x 64 at every width, `scaled_depth` further divides o_proj and down_proj by
  # sqrt(2 n_layers). (scaled at 0.02 is dyt_scaled of ../2026-12-06-init-width-cpu, seeds 1 and 2.)
  echo "dyt_scaled_c008 128 1 $scaled --set model.init_std=0.008"
  echo "dyt_scaled_c01 128 1 $scaled --set model.init_std=0.01"
  echo "dyt_scaled_c0125 128 1 $scaled --set model.init_std=0.0125"
  echo "dyt_scaled_c0156 128 1 $scaled --set model.init_std=0.0156"
  echo "dyt_depth_c0156 128 1 $depth --set model.init_std=0.0156"
  echo "dyt_depth_c025 128 1 $depth --set model.init_std=0.025"
  # The official code's weight decay on alpha, the DyT weights and embed_scale (dytrain's groups have none).
  local wd="--set optim.dyt_alpha.weight_decay=true --set optim.dyt_gamma_beta.weight_decay=true"
  echo "dyt_scaled_wdall 128 1 $scaled $wd --set optim.embed_scale.weight_decay=true"
  # alpha0 against the init (the sweep's question; here only to see whether the init choice depends on it).
  echo "dyt_scaled_a05f05 128 1 $scaled $a05"
  echo "dyt_scaled_c0156_a05 128 1 $scaled --set model.init_std=0.0156 $a05"
  echo "dyt_depth_a05 128 1 $depth $a05"
  echo "dyt_scaled_a08f02 128 1 $scaled --set model.alpha_attn=0.8 --set model.alpha_ffn=0.2"
  # DyT and RMSNorm with the fixed and the chosen init (scaled_depth, init_std 0.02): three seeds, except at width
  # 256 (10 minutes a run) where rms_depth and dyt_fixed have seed 1 only.
  for w in 64 128 256; do for s in 1 2 3; do
    echo "dyt_depth $w $s $depth"; echo "rms_fixed $w $s $rms $fixed"
    if [ $w -lt 256 ] || [ $s -eq 1 ]; then echo "rms_depth $w $s $rms $depth"; echo "dyt_fixed $w $s $fixed"; fi
  done; done
}
if [ -n "$QUEUE" ]; then cat "$QUEUE"; else study; fi | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
