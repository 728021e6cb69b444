// Data and tensor parallelism end to end, through the real CLI under mpirun (CPU, MPI backend): tp2, dp2, dp2 x tp2
// and ZeRO-1 runs follow the single-process run step by step; a checkpoint written under dp2 x tp2 resumes in a
// single process and continues the same trajectory; a killed rank ends the whole job; a rank with bad input makes
// every rank exit with code 2.
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/trainer/train/cli_runs.h"

namespace {

namespace fs = std::filesystem;

// n_heads, n_kv_heads, the FFN size and the vocabulary all divide by tp = 2.
std::string tiny_config() {
  const std::string data = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";
  return "model: {vocab_size: 256, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 64, max_seq_len: 64, "
         "dyt_bias: true}\n"
         "optim: {lr: 0.003, min_lr: 0.0003, warmup_steps: 2}\n"
         "data: {train: " + data + "text_bytes_train.bin, val: " + data + "text_bytes_val.bin}\n"
         "train: {micro_batch: 4, seq_len: 32, max_steps: 8, log_every: 1, val_every: 4, val_batches: 2, "
         "device: cpu}\n";
}

// Step by step within fp32 reduction-order noise: tensor parallelism adds partial sums of the row-parallel linears
// and data parallelism averages per-rank gradients, where one process sums the same terms in another order. Each
// step moves the result by a few ulps (observed ~1e-9 relative over 8 steps); 1e-5 leaves room for growth and still
// fails on any real error (a wrong gradient shifts the loss at 1e-3 within a step or two).
constexpr double kFp32Tolerance = 1e-5;

class ParallelTrainTest : public ::testing::Test {
 protected:
  int run(int np, const std::string& run_dir, const std::string& flags) { return runs_.run(np, run_dir, flags); }
  void expect_same_trajectory(const std::string& a, const std::string& b) {
    runs_.expect_same_trajectory(a, b, kFp32Tolerance);
  }

  dytrain::testing::CliRuns runs_{tiny_config()};
  const fs::path& dir_ = runs_.dir();
};

TEST_F(ParallelTrainTest, LayoutsFollowTheSingleProcessRun) {
  // dp ranks each read micro_batch windows; the single-process control reads the same global batch of windows
  // (dealt round-robin to the dp ranks) as grad_accum micro-batches of its own. dp2_tp2_accum2 has the dp average
  // started layer by layer inside the last micro-batch's backward, between the tp all-reduces (grad_sync.h).
  ASSERT_EQ(run(0, "single", ""), 0);
  ASSERT_EQ(run(0, "single_accum2", "--set train.grad_accum=2"), 0);
  ASSERT_EQ(run(0, "single_accum4", "--set train.grad_accum=4"), 0);
  ASSERT_EQ(run(2, "tp2", "--set parallel.tp=2"), 0);
  ASSERT_EQ(run(2, "dp2", ""), 0);
  ASSERT_EQ(run(2, "dp2_zero1", "--set parallel.zero1=true"), 0);
  ASSERT_EQ(run(4, "dp2_tp2_zero1", "--set parallel.tp=2 --set parallel.zero1=true"), 0);
  ASSERT_EQ(run(4, "dp2_tp2_accum2", "--set parallel.tp=2 --set train.grad_accum=2"), 0);
  expect_same_trajectory("single", "tp2");
  expect_same_trajectory("single_accum2", "dp2");
  expect_same_trajectory("single_accum2", "dp2_zero1");
  expect_same_trajectory("single_accum2", "dp2_tp2_zero1");
  expect_same_trajectory("single_accum4", "dp2_tp2_accum2");
}

TEST_F(ParallelTrainTest, CheckpointMovesBetweenLayouts) {
  const std::string every4 = "--set train.ckpt_every=4 --set train.keep_checkpoints=3";
  ASSERT_EQ(run(4, "dp2_tp2", every4 + " --set parallel.tp=2 --set parallel.zero1=true"), 0);
  // The checkpoint on disk holds whole tensors: resume its step 4 in one process with the same global batch.
  fs::remove_all(dir_ / "dp2_tp2" / "checkpoints" / "step_00000008");
  ASSERT_EQ(run(0, "dp2_tp2", every4 + " --set train.grad_accum=2 --resume"), 0);
  ASSERT_EQ(run(0, "control", "--set train.grad_accum=2"), 0);
  expect_same_trajectory("control", "dp2_tp2");
  // And back: a single-process checkpoint resumes under tp2.
  fs::remove_all(dir_ / "dp2_tp2" / "checkpoints" / "step_00000008");
  ASSERT_EQ(run(2, "dp2_tp2", every4 + " --set train.grad_accum=2 --set parallel.tp=2 --resume"), 0);
  expect_same_trajectory("control", "dp2_tp2");
}

TEST_F(ParallelTrainTest, BadInputOnAnyRankEndsEveryRankWithCode2) {
  // tp must divide the world: every rank refuses the layout, none hangs.
  EXPECT_EQ(run(2, "bad_tp", "--set parallel.tp=4"), 2);
  // A layout the model cannot split.
  EXPECT_EQ(run(2, "bad_split", "--set parallel.tp=2 --set model.n_kv_heads=1"), 2);
  EXPECT_FALSE(fs::exists(dir_ / "bad_split" / "checkpoints"));
}

TEST_F(ParallelTrainTest, StopSignalCheckpointsOnEveryRankAndStops) {
  // Preemption under mpirun: SIGUSR1 to mpirun is forwarded to every rank (mpirun answers SIGTERM by killing the job
  // itself). The ranks, which may see it at different steps, agree on one, write one checkpoint together and exit
  // with code 4 instead of hanging in a collective.
  const std::string run_dir = (dir_ / "term").string();
  const std::string script = (dir_ / "term.sh").string();
  std::ofstream(script) << "OMP_NUM_THREADS=1 timeout 120 " << DYTRAIN_MPIEXEC << " -np 2 " << DYTRAIN_BIN
                        << " train " << runs_.config() << " --run-dir " << run_dir
                        << " --set train.max_steps=1000000 > " << run_dir << ".log 2>&1 &\n"
                           "job=$!\n"
                           "for i in $(seq 1 150); do [ -f " << run_dir << "/metrics.jsonl ] && break; sleep 0.2; done\n"
                           "pkill -USR1 -P $job\n"  // mpirun itself, the child of `timeout`
                           "wait $job\n";
  const int status = std::system(("bash " + script).c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 4) << "dytrain's exit code for a run stopped by a signal";
  bool found = false;
  for (const auto& e : fs::directory_iterator(dir_ / "term" / "checkpoints"))
    found |= e.path().filename().string().rfind("step_", 0) == 0 && e.path().extension() != ".tmp";
  EXPECT_TRUE(found) << "a complete checkpoint after the stop signal";
}

TEST_F(ParallelTrainTest, AKilledRankEndsTheJob) {
  // A long run; once it is training, rank processes are found by their command line (it starts with the binary's
  // path, unlike the shells around them) and one is killed. `timeout` bounds a hang so the test fails, not CI.
  const std::string run_dir = (dir_ / "killed").string();
  const std::string script = dir_ / "kill.sh";
  std::ofstream(script) << "OMP_NUM_THREADS=1 timeout 120 " << DYTRAIN_MPIEXEC << " -np 2 " << DYTRAIN_BIN
                        << " train " << runs_.config() << " --run-dir " << run_dir
                        << " --set train.max_steps=1000000 --set train.log_every=100000 > " << run_dir
                        << ".log 2>&1 &\n"
                           "job=$!\n"
                           "for i in $(seq 1 150); do [ -f " << run_dir << "/metrics.jsonl ] && break; sleep 0.2; done\n"
                           "pid=$(pgrep -f '^" << DYTRAIN_BIN << " train .*" << run_dir << "' | tail -n 1)\n"
                           "[ -n \"$pid\" ] || { kill $job; exit 99; }\n"
                           "kill -9 $pid\n"
                           "wait $job\n";
  const auto start = std::chrono::steady_clock::now();
  const int status = std::system(("bash " + script).c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 99) << "no rank process was found to kill";
  EXPECT_NE(WEXITSTATUS(status), 0) << "mpirun must fail when a rank is killed";
  EXPECT_NE(WEXITSTATUS(status), 124) << "the job hung until the timeout";
  EXPECT_LT(seconds, 100.0);
}

}  // namespace
