// A failure on one rank ends the whole job in seconds, through the real CLI under mpirun: rank 1 throws in the
// backward pass of step 3, after its overlapped gradient average has started (DYTRAIN_TEST_THROW_AT,
// trainer/train/fault_injection.h), while rank 0 waits for it in the dp all-reduce. The engine that fired also stands
// in for an NCCL communicator with unmatched collectives: its teardown waits 10 minutes. So the job ends in seconds
// only if the failing rank ends the job before it unwinds the engine (trainer.cpp, ending_job_on_error); before that
// fix this job took the watchdog's limit plus OpenMPI's keepalive grace (~8 minutes) and the test's timeout killed it.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/common/read_file.h"
#include "tests/trainer/train/cli_runs.h"
#include "trainer/train/fault_injection.h"

namespace {

using dytrain::testing::read_file;
using dytrain::testing::have_mpi;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kData = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";

// dim 64 and ffn_dim 128: sizes the GPU model's fused GEMMs also take.
std::string tiny_config() {
  return "model: {vocab_size: 256, dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 128, max_seq_len: 64}\n"
         "optim: {lr: 0.003, min_lr: 0.0003, warmup_steps: 2}\n"
         "data: {train: " + kData + "text_bytes_train.bin}\n"
         "train: {micro_batch: 4, seq_len: 32, max_steps: 8, log_every: 1, device: cpu}\n";
}

std::string this_host() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

struct JobResult {
  int code;         // the exit code; 137 if `timeout` had to end it
  double seconds;   // wall time
  std::string log;  // stdout and stderr of every rank
};

// `dytrain train` on np ranks with DYTRAIN_TEST_THROW_AT=fault and `flags`, ended by `timeout` after limit_s, in the
// run directory `name`.
JobResult run_with_fault(const dytrain::testing::CliRuns& runs, const std::string& name, int np,
                         const std::string& fault, int limit_s, const std::string& flags = "") {
  const fs::path log = runs.dir() / (name + ".log");
  std::string cmd = "DYTRAIN_TEST_THROW_AT=" + fault + " OMP_NUM_THREADS=1 timeout -s KILL " +
                    std::to_string(limit_s) + " ";
  cmd += std::string(DYTRAIN_MPIEXEC) + " -np " + std::to_string(np) + " " + DYTRAIN_BIN + " train " + runs.config() +
         " --run-dir " + (runs.dir() / name).string() + " " + flags + " > " + log.string() + " 2>&1";
  const auto t0 = Clock::now();
  const int status = std::system(cmd.c_str());
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, seconds, read_file(log)};
}

// Processes whose command line names this test's directory (the ranks of its jobs).
int processes_left(const dytrain::testing::CliRuns& runs) {
  const std::string path = runs.dir().string();
  const std::string cmd = "pgrep -f '[" + path.substr(0, 1) + "]" + path.substr(1) + "' > /dev/null";
  return std::system(cmd.c_str()) == 0 ? 1 : 0;
}

// Why `dytrain train` refused to start (exit code 2) for lack of a GPU setup, or "" when it did not.
std::string refusal(const JobResult& r) {
  if (r.code != 2) return "";
  for (const char* reason : {"no CUDA backend", "sees a GPU", "would share", "found no NCCL"})
    if (r.log.find(reason) != std::string::npos) return reason;
  return "";
}

TEST(AbortCliTest, AFailureOnOneRankAfterTheGradientHooksStartedEndsTheJobInSeconds) {
  if (!have_mpi()) GTEST_SKIP() << "built without MPI";
  const dytrain::testing::CliRuns runs(tiny_config());
  const JobResult r = run_with_fault(runs, "cpu", 2, "backward:rank1:step3", 120);
  EXPECT_EQ(r.code, 1) << "kExitError from MPI_Abort (137: the job hung until `timeout` ended it)\n" << r.log;
  // Start-up and two steps take a few seconds on a loaded 2-core machine; the engine's teardown alone would take 600.
  EXPECT_LT(r.seconds, 60.0) << r.log;
  const std::string failed = "rank 1 on " + this_host() + ": DYTRAIN_TEST_THROW_AT: injected failure in the backward "
                             "pass of step 3";
  EXPECT_NE(r.log.find(failed), std::string::npos) << failed << " in:\n" << r.log;
  EXPECT_EQ(r.log.find("step      3/8"), std::string::npos) << "step 3 must not complete:\n" << r.log;
  EXPECT_EQ(processes_left(runs), 0) << "a rank outlived the job";
}

// The same through the CUDA engine, where a GPU is lent: both ranks on one GPU over the staged backend, and over
// NCCL where the host has a GPU per rank (the NCCL communicator's teardown is then the real one the fix avoids).
// Each variant the build or the host cannot run is skipped with the CLI's own reason (exit code 2 at start).
TEST(AbortCliTest, OnTheGpuEngineAFailureOnOneRankAlsoEndsTheJobInSeconds) {
  if (!have_mpi()) GTEST_SKIP() << "built without MPI";
  const dytrain::testing::CliRuns runs(tiny_config());
  std::string skipped;
  for (const std::string& comm : {std::string("mpi"), std::string("nccl")}) {
    SCOPED_TRACE("parallel.gpu_comm " + comm);
    const JobResult r = run_with_fault(runs, "cuda_" + comm, 2, "backward:rank1:step3", 120,
                                       "--set train.device=cuda --set parallel.gpu_comm=" + comm);
    const std::string why = refusal(r);
    if (!why.empty()) {
      skipped += "gpu_comm " + comm + ": " + why + "; ";
      continue;
    }
    EXPECT_EQ(r.code, 1) << r.log;
    EXPECT_LT(r.seconds, 60.0) << r.log;
    EXPECT_NE(r.log.find("rank 1 on " + this_host() + ": DYTRAIN_TEST_THROW_AT"), std::string::npos) << r.log;
    EXPECT_EQ(processes_left(runs), 0) << "a rank outlived the job";
  }
  if (skipped.find("gpu_comm mpi") != std::string::npos) GTEST_SKIP() << "not run: " << skipped;
}

TEST(AbortCliTest, AMalformedFaultSpecIsAnErrorNotIgnored) {
  EXPECT_FALSE(dytrain::parse_fault_spec("").has_value());
  const auto spec = dytrain::parse_fault_spec("backward:rank1:step3");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->point, "backward");
  EXPECT_EQ(spec->rank, 1);
  EXPECT_EQ(spec->step, 3);
  for (const char* bad : {"backward:step3", "forward:rank0:step1", "backward:rank1:step", "backward:rank-1:step2"})
    EXPECT_THROW(dytrain::parse_fault_spec(bad), std::invalid_argument) << bad;
}

}  // namespace
