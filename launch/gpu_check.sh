#!/usr/bin/env bash
# Everything that needs a GPU, in one call: build for the GPU, the CUDA kernel / model / engine / training tests, the
# NCCL communicator on one rank, the staged device communicator, the tensor-parallel GPU model and data / tensor
# parallelism with ZeRO-1 on 2-4 ranks sharing the GPU, the norm, attention (flash beside materialized) and
# training-throughput benchmarks (the latter with each attention path), and a short real training run on the GPU.
#   bash launch/gpu_check.sh OUT_DIR        (OUT_DIR/gpu_check.tar.gz: every log and figure; a summary on stdout)
# Napkin math: build (only these targets) ~3 min on 16 cores; the tests ~1 min; bench_norms ~20 s; bench_attention
# 3 shapes x 2 paths x 46 calls of at most ~20 ms, plus ~1 GB of host copies for its smoke comparison, well under
# a minute; bench_train 3 shapes x 13 steps, the largest (d2048, ~950M params, 16K tokens/step at ~100K tok/s)
# ~0.2 s/step, ~1 min with set-up, run twice (materialized, flash); the tiny run (300 steps of 2K tokens) well under
# a minute. ~7-8 minutes: inside the device machine's 10-minute command limit.
# The training run reads data/prepared/austen/sp4096 (git-ignored: prepare it with launch/quickstart.sh, or copy it
# along); it is skipped when absent.
set -uo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: launch/gpu_check.sh OUT_DIR}
# Logs are written here and packed into one archive: one file to copy off a remote GPU host.
out=build-gpu/gpu_check
rm -rf "$out" && mkdir -p "$out" "$dest"
trap 'tar -czf "$dest/gpu_check.tar.gz" -C build-gpu gpu_check' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1

echo "== build (Release, sm_90)"
if ! { cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
       cmake --build build-gpu -j "$(nproc)" --target dytrain test_kernels_cuda model_cuda_test cuda_train_test \
         train_test parallel_nccl_test parallel_staged_test tp_llama_cuda_test cuda_parallel_train_test \
         dytrain_bench_norms dytrain_bench_attention \
         dytrain_bench_train; } > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 1
fi

echo "== GPU tests"
status=0
mpi=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
# name | time limit (s) | command (binaries relative to build-gpu/tests). A hung kernel must not eat the device call:
# each check gets a few minutes at most; cuda_parallel_train runs ten small CLI jobs, so it gets more.
checks=(
  "test_kernels_cuda|180|kernels/cuda/test_kernels_cuda"
  "model_cuda_test|180|trainer/model/model_cuda_test"
  "engine_contract|180|trainer/train/train_test --gtest_filter=Devices/EngineContract.*"
  "cuda_train_test|180|trainer/train/cuda_train_test"
  "parallel_nccl_test|180|parallel/parallel_nccl_test"
  "parallel_staged_np2|180|${mpi[*]} -np 2 build-gpu/tests/parallel/parallel_staged_test"
  "tp_llama_cuda_np2|180|${mpi[*]} -np 2 build-gpu/tests/trainer/model/tp_llama_cuda_test"
  "tp_llama_cuda_np4|180|${mpi[*]} -np 4 build-gpu/tests/trainer/model/tp_llama_cuda_test"
  "cuda_parallel_train_test|300|trainer/train/cuda_parallel_train_test"
)
for check in "${checks[@]}"; do
  IFS='|' read -r name limit_s cmd <<< "$check"
  [[ $cmd == mpirun* ]] || cmd="build-gpu/tests/$cmd"
  timeout "$limit_s" $cmd --gtest_brief=1 --gtest_color=no > "$out/$name.log" 2>&1 || status=1
  echo "$name: $(grep -E '^\[ +(PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$out/$name.log" | tr '\n' ' ')"
done
grep -h -A3 "Failure" "$out"/*.log | head -60

echo "== benchmarks"
timeout 120 build-gpu/bench/dytrain_bench_norms > "$out/bench_norms.txt" 2>&1; cat "$out/bench_norms.txt"
timeout 120 build-gpu/bench/dytrain_bench_attention > "$out/bench_attention.txt" 2>&1; cat "$out/bench_attention.txt"
timeout 180 build-gpu/bench/dytrain_bench_train > "$out/bench_train.txt" 2>&1; cat "$out/bench_train.txt"
timeout 180 build-gpu/bench/dytrain_bench_train --set model.attention=flash > "$out/bench_train_flash.txt" 2>&1
cat "$out/bench_train_flash.txt"

if compgen -G "data/prepared/austen/sp4096/train_*.bin" > /dev/null; then
  echo "== tiny training run on the GPU (the quick start's recipe)"
  rm -rf build-gpu/runs/tiny-gpu
  timeout 120 build-gpu/dytrain train configs/train/tiny.yaml --run-dir build-gpu/runs/tiny-gpu --set train.device=cuda \
    > "$out/train_tiny_gpu.log" 2>&1 || { status=1; tail -5 "$out/train_tiny_gpu.log"; }
  cp build-gpu/runs/tiny-gpu/metrics.jsonl "$out/tiny_gpu_metrics.jsonl" 2>/dev/null
  grep -E "memory|step +(1|100|200|300)/|done" "$out/train_tiny_gpu.log"
fi
exit $status
