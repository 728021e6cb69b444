// Data and tensor parallelism and ZeRO-1 on the GPU, end to end through the CLI: dp2, dp2 with ZeRO-1, tp2,
// dp2 x tp2 with ZeRO-1 and dp2 x tp2 with micro-batch accumulation follow the single-process GPU run with the same
// global batch step by step, and a ZeRO-1 checkpoint resumes in one process on the same trajectory. All ranks share
// GPU 0 over the staged backend (parallel.gpu_comm: mpi), so this runs on a one-GPU machine; the NCCL backend runs
// the same engine code with other collectives (nccl_test.cpp checks them on one rank). Skips without a GPU.
//
// Tolerance. The runs start from the same parameters and see the same micro-batches, each through the same
// deterministic kernels. What differs is the order of fp32 sums: the single process accumulates 0.5 * g1 + 0.5 * g2
// in the gradient buffer (exact halvings: the loss weight scales dlogits by a power of two) where dp2 averages
// (g1 + g2) / 2 over the ranks, and ZeRO-1 adds the norm's squares block by block. That is an ulp of fp32 per step;
// it reaches the bf16 activations only where a master weight sits on a bf16 rounding boundary, which moves the loss
// by ~1e-6 relative. 1e-3 leaves room for that to grow over 8 steps and still fails on a real error: an average off
// by a factor, or a block of parameters left out of the update or the all-gather, moves the loss by 1e-2 within a few
// steps at this lr.
//
// Tensor parallelism changes the arithmetic itself: each row-parallel output and each column-parallel input gradient
// is rounded to bf16 as a partial sum before the tp sum, where one GEMM rounds the whole sum once. Those are more
// roundings of the kind that separate the GPU from the CPU model (~0.5% in the loss of one forward, all of them
// together; llama_cuda_test.cpp), and 8 steps at this lr barely amplify them (the GPU run stays within 3% of the CPU
// run over 60 steps, cuda_train_test.cpp): 2%. The layouts' structure is checked tighter by tp_llama_cuda_test.cpp.
#include <cuda_runtime_api.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/trainer/train/cli_runs.h"

namespace {

namespace fs = std::filesystem;

constexpr double kBf16Tolerance = 1e-3;
constexpr double kTensorParallelTolerance = 2e-2;

std::string tiny_gpu_config() {
  const std::string data = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  // Sizes the fused q/k/v and gate/up GEMMs accept (multiples of 8, layout.h).
  return "model: {vocab_size: 256, dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 128, max_seq_len: 64, "
         "dyt_bias: true}\n"
         "optim: {lr: 0.003, min_lr: 0.0003, warmup_steps: 2}\n"
         "data: {train: " + data + "text_bytes_train.bin, val: " + data + "text_bytes_val.bin}\n"
         "train: {micro_batch: 4, seq_len: 64, max_steps: 8, log_every: 1, val_every: 4, val_batches: 2, "
         "device: cuda}\n"
         "parallel: {gpu_comm: mpi}\n";
}

class CudaParallelTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  }
  dytrain::testing::CliRuns runs_{tiny_gpu_config()};
};

TEST_F(CudaParallelTrainTest, DataParallelAndZero1FollowTheSingleProcessRun) {
  ASSERT_EQ(runs_.run(0, "single_accum2", "--set train.grad_accum=2"), 0);
  ASSERT_EQ(runs_.run(2, "dp2", ""), 0);
  ASSERT_EQ(runs_.run(2, "dp2_zero1", "--set parallel.zero1=true"), 0);
  runs_.expect_same_trajectory("single_accum2", "dp2", kBf16Tolerance);
  runs_.expect_same_trajectory("single_accum2", "dp2_zero1", kBf16Tolerance);
}

TEST_F(CudaParallelTrainTest, TensorParallelLayoutsFollowTheSingleProcessRun) {
  ASSERT_EQ(runs_.run(0, "single", ""), 0);
  ASSERT_EQ(runs_.run(0, "single_accum2", "--set train.grad_accum=2"), 0);
  ASSERT_EQ(runs_.run(2, "tp2", "--set parallel.tp=2"), 0);
  ASSERT_EQ(runs_.run(4, "dp2_tp2_zero1", "--set parallel.tp=2 --set parallel.zero1=true"), 0);
  runs_.expect_same_trajectory("single", "tp2", kTensorParallelTolerance);
  runs_.expect_same_trajectory("single_accum2", "dp2_tp2_zero1", kTensorParallelTolerance);
}

// Micro-batch accumulation under tp with the dp average overlapped with the backward pass (started layer by layer on
// the last micro-batch): each dp rank accumulates two micro-batches, so the global batch is the single run's four.
TEST_F(CudaParallelTrainTest, AccumulationUnderTensorParallelismFollowsTheSingleProcessRun) {
  ASSERT_EQ(runs_.run(0, "single_accum4", "--set train.grad_accum=4"), 0);
  ASSERT_EQ(runs_.run(4, "dp2_tp2_accum2", "--set parallel.tp=2 --set train.grad_accum=2"), 0);
  runs_.expect_same_trajectory("single_accum4", "dp2_tp2_accum2", kTensorParallelTolerance);
}

TEST_F(CudaParallelTrainTest, Zero1CheckpointResumesInOneProcess) {
  const std::string every4 = "--set train.ckpt_every=4 --set train.keep_checkpoints=3";
  ASSERT_EQ(runs_.run(2, "zero1", every4 + " --set parallel.zero1=true"), 0);
  // The sharded moments were gathered into whole tensors: resume step 4 in one process with the same global batch.
  fs::remove_all(runs_.dir() / "zero1" / "checkpoints" / "step_00000008");
  ASSERT_EQ(runs_.run(0, "zero1", every4 + " --set train.grad_accum=2 --resume"), 0);
  ASSERT_EQ(runs_.run(0, "control", "--set train.grad_accum=2"), 0);
  runs_.expect_same_trajectory("control", "zero1", kBf16Tolerance);
}

}  // namespace
