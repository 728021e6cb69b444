#!/usr/bin/env bash
# One device call that checks the GPU backend, then spends what is left of the call on the real alpha0 sweep:
#   bash launch/gpu_session.sh OUT_DIR [TOTAL_S]
# launch/gpu_check.sh (build, every GPU test, both benchmarks, a tiny GPU run), then launch/gpu_sweep.sh on
# configs/sweeps/alpha_widths_gpu.yaml with the seconds left of TOTAL_S (default 540, under a 10-minute command
# limit) less a margin for its report. Run it again to resume the sweep (the build is kept; the checks rerun).
# Napkin math: build ~2-3 min on 16 cores, tests ~1-2 min, benchmarks ~2 min, so the first call leaves the sweep
# ~2-4 min: its 256- and 512-wide points at three at a time; a second call finishes the 1024-wide ones.
# Data: the tiny run reads data/prepared/austen and the sweep data/prepared/mix; a GPU host without the Debian
# packages the recipes read cannot prepare them, so prepare both where the packages are
# (`dytrain data prepare configs/data/{austen,mix}.yaml`, with `bash launch/setup.sh --corpora`) and copy them along.
set -uo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: launch/gpu_session.sh OUT_DIR [TOTAL_S]}
total=${2:-540}
report_margin_s=45

bash launch/gpu_check.sh "$dest"
check=$?
left=$((total - SECONDS - report_margin_s))
if [ "$left" -lt 60 ]; then
  echo "== sweep skipped: ${left}s left of ${total}s"
elif ! compgen -G "data/prepared/mix/sp16384/train_*.bin" > /dev/null; then
  echo "== sweep skipped: data/prepared/mix is not here (prepare configs/data/mix.yaml and copy it along)"
else
  bash launch/gpu_sweep.sh "$dest" configs/sweeps/alpha_widths_gpu.yaml "$left"
fi
exit $check
