#!/usr/bin/env bash
# Launches `dytrain train` on N ranks with OpenMPI's mpirun: one rank per GPU, world = dp x tp (parallel.tp in the
# config; TP groups are contiguous ranks, so keep tp <= ranks per node).
#
#   launch/mpirun.sh -np N [--hostfile FILE | -H host1:K,host2:K] [--per-node K] [--oversubscribe] [--dry-run]
#                    [-x NAME ...] [other mpirun options] -- CONFIG.yaml [--set key=value ... --run-dir DIR --resume]
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
# threads free (OpenMPI would otherwise bind a rank to one core when N <= 2). OMP_*, OPENBLAS_*, DYTRAIN_*, NCCL_*,
# CUDA_VISIBLE_DEVICES and every -x NAME are exported to every rank; OMP_NUM_THREADS defaults to this host's cores /
# the ranks of one node (--per-node, else the hostfile's or -H's slots per host). Options this script does not know
# (--mca NAME VALUE, --map-by ...) go to mpirun unchanged, after its own. OpenMPI's TCP keepalive is set so a vanished
# node ends the job in 20 to 40 s (see below).
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

np="" hosts=() per_node="" oversubscribe=0 dry_run=0 passthrough=() forward=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -np|-n) [[ $# -ge 2 ]] || usage "$1 needs a rank count"; np="$2"; shift 2 ;;
    --hostfile|-hostfile|--machinefile|-machinefile)
      [[ $# -ge 2 ]] || usage "$1 needs a file"; hosts=(--hostfile "$2"); shift 2 ;;
    -H|--host|-host) [[ $# -ge 2 ]] || usage "$1 needs host1:K,host2:K"; hosts=(-H "$2"); shift 2 ;;
    --per-node) [[ $# -ge 2 ]] || usage "--per-node needs a rank count"; per_node="$2"; shift 2 ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -x) [[ $# -ge 2 ]] || usage "-x needs a variable name (NAME or NAME=VALUE)"; forward+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
[[ "$np" =~ ^[1-9][0-9]*$ ]] || usage "-np N is required, N a positive integer"
[[ -z "$per_node" || "$per_node" =~ ^[1-9][0-9]*$ ]] || usage "--per-node K needs a positive integer, got $per_node"
[[ $# -ge 1 ]] || usage "a config file is required after -- (mpirun options go before it)"
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

# Ranks per node: --per-node, else the most slots any host offers (mpirun fills a host's slots before the next, so
# that host runs min(slots, np) ranks), else np (one host). Slots come from "host slots=K" lines of a hostfile (a
# host named on several lines adds up) or host:K in -H (host without :K is one slot, as mpirun counts it).
max_slots() {
  local -A slots=()
  local host k best=0
  if [[ "${hosts[0]:-}" == --hostfile ]]; then
    [[ -f "${hosts[1]}" ]] || usage "hostfile ${hosts[1]} not found"
    while read -r host rest; do
      [[ -z "$host" || "$host" == \#* ]] && continue
      k=1
      [[ "$rest" =~ (^|[[:space:]])(slots|max_slots)=([0-9]+) ]] && k="${BASH_REMATCH[3]}"
      slots[$host]=$((${slots[$host]:-0} + k))
    done < "${hosts[1]}"
  elif [[ "${hosts[0]:-}" == -H ]]; then
    local entry
    for entry in ${hosts[1]//,/ }; do
      host="${entry%%:*}" k=1
      [[ "$entry" == *:* ]] && k="${entry#*:}"
      [[ "$k" =~ ^[0-9]+$ ]] || usage "-H entry $entry: expected host or host:K"
      slots[$host]=$((${slots[$host]:-0} + k))
    done
  fi
  for host in "${!slots[@]}"; do ((slots[$host] > best)) && best=${slots[$host]}; done
  echo "$best"
}
ranks_per_node="$per_node"
if [[ -z "$ranks_per_node" ]]; then
  slots="$(max_slots)"
  ranks_per_node=$((slots > 0 && slots < np ? slots : np))
fi
# The cores of this host stand for every node's (homogeneous nodes); set OMP_NUM_THREADS when they differ.
cores="$(nproc)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$((cores / ranks_per_node > 0 ? cores / ranks_per_node : 1))}"

# A dead peer (cut link, powered-off node) leaves OpenMPI's daemon connections silent; without keepalive OpenMPI
# notices after 8 minutes or more (its default: 300 s idle, then 9 probes 20 s apart). 15 s idle + 4 probes 5 s apart
# ends the job 20 to 40 s after a node vanishes (the probes start 15 s after the last traffic, which may precede the
# fault), after dytrain's watchdog line at parallel.timeout_s (15 s). A --mca NAME VALUE given here or an
# OMPI_MCA_NAME variable overrides each one.
mca=()
keepalive=(oob_tcp_keepalive_time 15 oob_tcp_keepalive_intvl 5 oob_tcp_keepalive_probes 4)
for ((i = 0; i < ${#keepalive[@]}; i += 2)); do
  name="${keepalive[$i]}" given=0
  for ((j = 0; j + 1 < ${#passthrough[@]}; ++j)); do
    [[ "${passthrough[$j]}" =~ ^--?mca$ && "${passthrough[$((j + 1))]}" == "$name" ]] && given=1
  done
  env_name="OMPI_MCA_$name"
  [[ $given -eq 0 && -z "${!env_name:-}" ]] && mca+=(--mca "$name" "${keepalive[$((i + 1))]}")
done

cmd=(mpirun -np "$np" "${hosts[@]}" --bind-to none)
[[ "$(id -u)" -eq 0 ]] && cmd+=(--allow-run-as-root)
[[ $oversubscribe -eq 1 ]] && cmd+=(--oversubscribe)
[[ -n "$per_node" ]] && cmd+=(--map-by "ppr:$per_node:node")
cmd+=("${mca[@]}")
# Remote ranks start in the clean environment of a remote shell: every setting that changes what a rank computes or
# how fast (threads, OpenBLAS kernel, NCCL, dytrain's own) is exported by name, plus the -x names given here.
pattern='^(NCCL_[A-Za-z0-9_]*|OMP_[A-Za-z0-9_]*|OPENBLAS_[A-Za-z0-9_]*|DYTRAIN_[A-Za-z0-9_]*|CUDA_VISIBLE_DEVICES)$'
names=" $(compgen -e | grep -E "$pattern" | sort | tr '\n' ' ')"
for name in $names; do cmd+=(-x "$name"); done
for name in "${forward[@]}"; do
  [[ "$name" != *=* && "$names" == *" $name "* ]] || cmd+=(-x "$name")
done
cmd+=("${passthrough[@]}")
cmd+=("$bin" train "$config" "${train_args[@]}")

echo "run dir: $run_dir; OMP_NUM_THREADS=$OMP_NUM_THREADS per rank" >&2
printf '+' >&2
printf ' %q' "${cmd[@]}" >&2
echo >&2
[[ $dry_run -eq 1 ]] && exit 0
exec "${cmd[@]}"
