#!/usr/bin/env bash
# A real alpha0 sweep on one GPU host in one command: build dytrain for the GPU (if not built), run the sweep's points
# K at a time on the one GPU under a wall-clock budget, write the report, pack everything into one archive.
#   bash launch/gpu_sweep.sh OUT_DIR [SPEC] [BUDGET_S] [--set key=value ...]
#     SPEC      default configs/sweeps/alpha_widths_gpu.yaml (its data must be prepared or copied along)
#     BUDGET_S  default 420: at that point the running points are stopped (SIGTERM: each writes a checkpoint) and
#               the report covers what finished; running the script again resumes where it stopped
#     --set     extra overrides for every point (e.g. --set optim.eps=1e-3), passed to `dytrain sweep run`
# Result: OUT_DIR/sweep.tar.gz (every point's config, metrics, status and console log, no checkpoints, and the
# report) and OUT_DIR/report.md; the report also goes to stdout.
# Environment: POINTS_AT_ONCE (default 3); BUILD_DIR (default build-gpu; a CPU build runs a CPU spec like tiny_ci);
# SWEEP_NAME (default the spec's file name): the run directory $BUILD_DIR/runs/$SWEEP_NAME. Give a new name with
# each new --set, or the points finished under the old settings are skipped.
# Napkin math (alpha_widths_gpu): build of the dytrain target ~2 min on 16 cores; 30 points in ~2-5 min (see the
# spec's header); small models leave most of an H100 idle, so 3 points share it.
set -uo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: launch/gpu_sweep.sh OUT_DIR [SPEC] [BUDGET_S] [--set key=value ...]}
spec=${2:-configs/sweeps/alpha_widths_gpu.yaml}
budget=${3:-420}
shift $(( $# < 3 ? $# : 3 ))
extra=("$@")
at_once=${POINTS_AT_ONCE:-3}
build=${BUILD_DIR:-build-gpu}  # another build (e.g. a CPU one) to try the script on a small spec
mkdir -p "$dest"

if [ ! -x "$build/dytrain" ]; then
  echo "== build (Release, sm_90)"
  { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
    cmake --build "$build" -j "$(nproc)" --target dytrain; } > "$dest/build.log" 2>&1 || { tail -40 "$dest/build.log"; exit 1; }
fi
exe=$build/dytrain
name=${SWEEP_NAME:-$(basename "$spec" .yaml)}
dir=$build/runs/$name
n=$("$exe" sweep run "$spec" --dir "$dir" --dry-run "${extra[@]}" | grep -c ' train ') || { echo "cannot expand $spec"; exit 2; }
echo "== $n points of $spec, $at_once at a time, budget ${budget}s"

# Lane k runs points k, k + K, k + 2K, ...: the spec lists widths outermost, so every lane gets every width.
# `sweep run --point I` skips points already done, so a second call resumes.
stop=$dir.stop
rm -f "$stop"
lane() {
  for ((i = $1; i < n; i += at_once)); do
    [ -e "$stop" ] && break
    "$exe" sweep run "$spec" --dir "$dir" --point "$i" "${extra[@]}" || true
  done
}
start=$(date +%s)
pids=()
for ((k = 0; k < at_once; ++k)); do lane "$k" > "$dest/lane$k.log" 2>&1 & pids+=($!); done
# At the budget: no lane starts another point, and each running one gets SIGTERM through its `sweep run`, which
# stops its training run at a checkpoint and marks it interrupted.
( sleep "$budget"; touch "$stop"; echo "== budget reached: stopping"; pkill -TERM -f "$exe sweep run" ) &
watchdog=$!
wait "${pids[@]}"
kill "$watchdog" 2>/dev/null
echo "== sweep ran $(( $(date +%s) - start ))s"

"$exe" sweep report "$dir" | tee "$dest/report.md"
tar -czf "$dest/sweep.tar.gz" --exclude=checkpoints -C "$build/runs" "$name"
