#!/usr/bin/env bash
# Fuzzes the readers of user files: bash launch/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
#
# Targets (tests/fuzz/fuzz_<name>.cpp): config (file + one --set), safetensors, shard (header and loader),
# trainer_state (trainer_state.yaml and the loader restore), gpt2_files (encoder.json + vocab.bpe), sweep_spec.
# Builds them with clang as libFuzzer binaries (ASan + UBSan, CPU only) in build-fuzz/, only what they link (the
# config, checkpoint, data, tokenizer and sweep-spec libraries: no model, kernels, MPI or CUDA), then runs each for
# SECONDS on a fresh copy of its seed corpus (tests/fuzz/corpus/<name>/) plus its past findings
# (tests/fuzz/regressions/<name>/), with tests/fuzz/<name>.dict as its dictionary where there is one (keys, YAML
# syntax and edge numbers such as 2^63 - 1, which random mutation rarely spells). Inputs found along the way stay in
# build-fuzz/, never in the tree.
#
# A finding is a crash, a sanitizer report, an input running over 10 s, a process over 2 GB, or an exception a
# reader must not throw for bad input (std::bad_alloc and friends: tests/fuzz/fuzz_input.h). The script then exits 1
# and prints the input's path (and its base64, so a CI log alone reproduces it) with the commands that reproduce
# and minimize it. A fixed finding is kept as a regression input: minimize it into tests/fuzz/regressions/<name>/
# and CTest's fuzz_replay_<name> replays it in every normal build (g++ included).
#
# Napkin math: the clang build compiles 25 files with sanitizers, 46 s of CPU (measured: 1m12 on 2 busy cores; once,
# rebuilds are incremental); the fuzzing takes 6 targets x SECONDS / FUZZ_JOBS (default: one target per core), i.e.
# 3 min for 60 s on 2 cores. Measured end to end from an empty build-fuzz/: 4m07 for `bash launch/fuzz.sh 60` on 2
# cores. Environment: FUZZ_JOBS (targets at a time), FUZZ_CXX (default clang++), FUZZ_SEED (libFuzzer's -seed: a
# fixed seed replays the same input sequence, so CI on main repeats what passed here instead of drawing new inputs;
# unset, every run explores new ones).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: SECONDS_PER_TARGET must be a positive integer, got '$seconds'" >&2
  exit 2
fi
targets=(config safetensors shard trainer_state gpt2_files sweep_spec)
jobs=${FUZZ_JOBS:-$(nproc)}
cxx=${FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found; install clang with its libFuzzer runtime (apt-get install clang libclang-rt-dev)" \
       "or point FUZZ_CXX at a clang++" >&2
  exit 2
fi

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
mkdir -p build-fuzz
cmake -S . -B build-fuzz "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDYTRAIN_FUZZ=ON -DDYTRAIN_WITH_CUDA=OFF -DDYTRAIN_WITH_MPI=OFF > build-fuzz/configure.log ||
  { cat build-fuzz/configure.log >&2; exit 1; }
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

# One target: a fresh copy of its corpus (libFuzzer adds new inputs to the first directory), artifacts beside it.
run_target() {
  local name=$1 work=build-fuzz/fuzz/$1
  rm -rf "$work"
  mkdir -p "$work/corpus"
  cp tests/fuzz/corpus/"$name"/* "$work/corpus/"
  local dirs=("$work/corpus") options=()
  if [ -d "tests/fuzz/regressions/$name" ]; then dirs+=("tests/fuzz/regressions/$name"); fi
  if [ -f "tests/fuzz/$name.dict" ]; then options+=(-dict="tests/fuzz/$name.dict"); fi
  if [ -n "${FUZZ_SEED:-}" ]; then options+=(-seed="$FUZZ_SEED"); fi
  local rc=0
  UBSAN_OPTIONS=print_stacktrace=1 "build-fuzz/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" "${options[@]}" "${dirs[@]}" \
    > "$work/log.txt" 2>&1 || rc=$?
  echo "$rc" > "$work/rc"
}

echo "fuzz: ${#targets[@]} targets x ${seconds} s, $jobs at a time"
for name in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_target "$name" &
done
wait

failed=0
for name in "${targets[@]}"; do
  work=build-fuzz/fuzz/$name
  rc=$(cat "$work/rc")
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$work/log.txt" | tail -1 || true)
  if [ "$rc" = 0 ]; then
    echo "fuzz_$name: no findings ($runs runs, ${cov:-cov: ?} edges, corpus $(ls "$work/corpus" | wc -l) inputs)"
    continue
  fi
  failed=1
  echo "fuzz_$name: FINDING (exit $rc); log: $work/log.txt"
  grep -E 'ERROR: |SUMMARY: |fuzz finding: |runtime error: |==[0-9]+==' "$work/log.txt" | head -20 | sed 's/^/  | /'
  for input in "$work"/crash-* "$work"/timeout-* "$work"/oom-* "$work"/leak-*; do
    [ -f "$input" ] || continue
    echo "  input: $input ($(stat -c %s "$input") bytes)"
    if [ "$(stat -c %s "$input")" -le 4096 ]; then
      echo "  base64 (base64 -d > input):"
      base64 -w 100 "$input" | sed 's/^/    /'
    fi
    echo "  reproduce: build-fuzz/tests/fuzz/fuzz_$name $input"
    echo "  minimize:  build-fuzz/tests/fuzz/fuzz_$name -minimize_crash=1 -max_total_time=60 -timeout=10" \
         "-exact_artifact_path=tests/fuzz/regressions/$name/<what-it-is> $input"
  done
done
if [ "$failed" != 0 ]; then
  echo "fuzz: findings above. Fix the cause; the minimized input in tests/fuzz/regressions/<target>/ is then" \
       "replayed by ctest -R fuzz_replay_<target>."
  exit 1
fi
echo "fuzz: no findings"
