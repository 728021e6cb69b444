#!/usr/bin/env bash
# Launches `dytrain train` on N ranks with OpenMPI's mpirun: one rank per GPU, world = dp x tp (parallel.tp in the
# config; TP groups are contiguous ranks, so keep tp <= ranks per node).
#
#   launch/mpirun.sh -np N [--hostfile FILE | -H host1:K,host2:K] [--per-node K] [--oversubscribe] [--dry-run]
#                    -- CONFIG.yaml [dytrain train args: --set key=value ... --run-dir DIR --resume]
#
# Napkin math for a typical job: the d1024 preset (configs/models/d1024.yaml, 24 layers, T = 2048, vocab 32000) on
# 8 H100s over 2 nodes (-np 8 -H a:4,b:4 --per-node 4).
#   N (matmul parameters)    = 308M in the blocks + 33M LM head = 341M (the embedding lookup costs no FLOPs)
#   FLOP per token           = 6N + 12 L d T = 2.04 G + 12 * 24 * 1024 * 2048 = 2.04 G + 0.60 G = 2.65 GFLOP
#   at 178K tokens/s per H100: 178e3 * 2.65e9 = 471 TFLOP/s per GPU = 48% MFU of the 989 TFLOP/s bf16 dense peak
#   8 GPUs                   : 1.42M tokens/s; 10B tokens in 10e9 / 1.42e6 = 7.0e3 s = 1.95 hours = 15.6 GPU-hours
#   (Chinchilla's 20 tokens per parameter for 374M parameters is 7.5B tokens: a 10B-token run is slightly past it.)
#
# Flags: --allow-run-as-root only when run as root (containers); --oversubscribe only when asked (more ranks than
# cores, for CPU tests); --per-node K maps K ranks per node (ppr:K:node); --bind-to none leaves each rank's OpenMP
# threads free (OpenMPI would otherwise bind a rank to one core when N <= 2). NCCL_*, CUDA_VISIBLE_DEVICES and
# OMP_NUM_THREADS are exported to every rank; OMP_NUM_THREADS defaults to the cores of a node / its ranks.
# DYTRAIN_BIN overrides the binary (default build/dytrain). --dry-run prints the command instead of running it.
# To stop the job with a checkpoint (preemption), send SIGUSR1 to mpirun: it forwards it to every rank, which agree on
# a step, checkpoint and exit with code 4. mpirun answers SIGTERM by killing the ranks, with no checkpoint.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
usage() {
  sed -n '5,6p' "$0" | sed 's/^# *//' >&2
  echo "mpirun.sh: $1" >&2
  exit 2
}

np="" hosts=() per_node="" oversubscribe=0 dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -np|-n) [[ $# -ge 2 ]] || usage "$1 needs a rank count"; np="$2"; shift 2 ;;
    --hostfile) [[ $# -ge 2 ]] || usage "--hostfile needs a file"; hosts=(--hostfile "$2"); shift 2 ;;
    -H|--host) [[ $# -ge 2 ]] || usage "$1 needs host1:K,host2:K"; hosts=(-H "$2"); shift 2 ;;
    --per-node) [[ $# -ge 2 ]] || usage "--per-node needs a rank count"; per_node="$2"; shift 2 ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    *) usage "unknown option $1 (dytrain's own arguments go after --)" ;;
  esac
done
[[ "$np" =~ ^[1-9][0-9]*$ ]] || usage "-np N is required, N a positive integer"
[[ -z "$per_node" || "$per_node" =~ ^[1-9][0-9]*$ ]] || usage "--per-node K needs a positive integer, got $per_node"
[[ $# -ge 1 ]] || usage "a config file is required after --"
config="$1"
shift
train_args=("$@")
[[ -f "$config" ]] || usage "config file $config not found"

# The run directory is named on the command line even when it is the default, so the printed command is the record.
run_dir=""
for ((i = 0; i < ${#train_args[@]}; ++i)); do
  [[ "${train_args[$i]}" == "--run-dir" && $((i + 1)) -lt ${#train_args[@]} ]] && run_dir="${train_args[$((i + 1))]}"
done
if [[ -z "$run_dir" ]]; then
  run_dir="runs/$(basename "${config%.*}")"
  train_args+=(--run-dir "$run_dir")
fi

bin="${DYTRAIN_BIN:-$repo/build/dytrain}"
[[ $dry_run -eq 1 || -x "$bin" ]] || usage "$bin is not built: run launch/build.sh first (or set DYTRAIN_BIN)"

ranks_per_node="${per_node:-$np}"
cores="$(nproc)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$((cores / ranks_per_node > 0 ? cores / ranks_per_node : 1))}"

cmd=(mpirun -np "$np" "${hosts[@]}" --bind-to none)
[[ "$(id -u)" -eq 0 ]] && cmd+=(--allow-run-as-root)
[[ $oversubscribe -eq 1 ]] && cmd+=(--oversubscribe)
[[ -n "$per_node" ]] && cmd+=(--map-by "ppr:$per_node:node")
for name in $(compgen -e | grep -E '^(NCCL_[A-Za-z0-9_]*|CUDA_VISIBLE_DEVICES|OMP_NUM_THREADS)$' | sort); do
  cmd+=(-x "$name")
done
cmd+=("$bin" train "$config" "${train_args[@]}")

echo "run dir: $run_dir" >&2
printf '+' >&2
printf ' %q' "${cmd[@]}" >&2
echo >&2
[[ $dry_run -eq 1 ]] && exit 0
exec "${cmd[@]}"
