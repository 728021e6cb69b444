#!/usr/bin/env bash
# launch/mpirun.sh --dry-run: the printed mpirun command is checked for what the launcher promises: unknown options
# pass through after its own, OMP_* / OPENBLAS_* / DYTRAIN_* and -x names are exported, threads per rank follow the
# slots per host, and the TCP keepalive MCA parameters are set unless given.
set -euo pipefail
script="$(cd "$(dirname "$0")/../.." && pwd)/launch/mpirun.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
touch "$work/c.yaml"
printf '# two nodes, one rank each\nnode-a slots=1\nnode-b slots=1\n' > "$work/hosts"
failures=0

# Runs the launcher in dry-run mode in a clean environment plus the given NAME=VALUE words; prints its stderr.
dry_run() {
  local vars=()
  while [[ $# -gt 0 && "$1" == *=* ]]; do vars+=("$1"); shift; done
  env -i PATH="$PATH" HOME="$work" "${vars[@]}" bash "$script" --dry-run "$@" 2>&1
}
expect() {  # expect DESCRIPTION OUTPUT REGEX
  grep -Eq -- "$3" <<< "$2" && { echo "ok: $1"; return; }
  printf 'FAIL: %s: no match for /%s/ in:\n%s\n' "$1" "$3" "$2"
  failures=$((failures + 1))
}
expect_not() {
  grep -Eq -- "$3" <<< "$2" || { echo "ok: $1"; return; }
  printf 'FAIL: %s: unexpected /%s/ in:\n%s\n' "$1" "$3" "$2"
  failures=$((failures + 1))
}

cores="$(nproc)"
out="$(dry_run OMP_WAIT_POLICY=PASSIVE OPENBLAS_CORETYPE=Haswell DYTRAIN_BIN=/bin/true MY_VAR=1 UNRELATED=1 \
  -np 2 --hostfile "$work/hosts" --mca btl tcp,self -x MY_VAR -x SET_HERE=3 -- "$work/c.yaml" --set train.max_steps=5)"
expect "unknown options follow the launcher's own, before the binary" "$out" \
  ' --bind-to none .* --mca btl tcp\\?,self /bin/true train '
expect "OMP_* forwarded" "$out" ' -x OMP_WAIT_POLICY '
expect "OMP_NUM_THREADS forwarded" "$out" ' -x OMP_NUM_THREADS '
expect "OPENBLAS_* forwarded" "$out" ' -x OPENBLAS_CORETYPE '
expect "DYTRAIN_* forwarded" "$out" ' -x DYTRAIN_BIN '
expect "-x NAME forwarded" "$out" ' -x MY_VAR '
expect "-x NAME=VALUE forwarded" "$out" ' -x SET_HERE=3 '
expect_not "other variables stay local" "$out" 'UNRELATED'
expect "threads from the hostfile's slots (1 rank per host of $cores cores)" "$out" "OMP_NUM_THREADS=$cores per rank"
expect "keepalive time" "$out" '--mca oob_tcp_keepalive_time 15 '
expect "keepalive interval" "$out" '--mca oob_tcp_keepalive_intvl 5 '
expect "keepalive probes" "$out" '--mca oob_tcp_keepalive_probes 4 '
expect "dytrain's arguments after the config" "$out" 'c.yaml --set train.max_steps=5 --run-dir runs/c$'

out="$(dry_run DYTRAIN_BIN=/bin/true -np 4 -H a:2,b:2 -- "$work/c.yaml")"
expect "threads from -H host:K" "$out" "OMP_NUM_THREADS=$(((cores / 2) > 0 ? cores / 2 : 1)) per rank"
out="$(dry_run DYTRAIN_BIN=/bin/true -np 2 -- "$work/c.yaml")"
expect "one host: threads = cores / np" "$out" "OMP_NUM_THREADS=$(((cores / 2) > 0 ? cores / 2 : 1)) per rank"
out="$(dry_run DYTRAIN_BIN=/bin/true OMP_NUM_THREADS=3 -np 2 --hostfile "$work/hosts" -- "$work/c.yaml")"
expect "OMP_NUM_THREADS set by the user wins" "$out" 'OMP_NUM_THREADS=3 per rank'

out="$(dry_run DYTRAIN_BIN=/bin/true OMPI_MCA_oob_tcp_keepalive_intvl=1 -np 2 --mca oob_tcp_keepalive_time 3 \
  -- "$work/c.yaml")"
expect "a --mca keepalive setting replaces the launcher's" "$out" '--mca oob_tcp_keepalive_time 3 '
expect_not "... and is not given twice" "$out" 'oob_tcp_keepalive_time 15'
expect_not "an OMPI_MCA_ keepalive variable replaces the launcher's" "$out" '--mca oob_tcp_keepalive_intvl'
expect "the other keepalive settings stay" "$out" '--mca oob_tcp_keepalive_probes 4 '

if [[ $failures -gt 0 ]]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"
