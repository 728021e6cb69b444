// Data checked before training, through the real CLI, alone and under mpirun: token ids the model cannot take stop
// `dytrain train` at start with exit code 2 and no run directory, wherever they sit in the train or validation
// shards; a shard truncated under a running job ends it with exit code 2 and a message naming the file, not SIGBUS.
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/common/read_file.h"
#include "tests/trainer/train/cli_runs.h"

namespace {

using dytrain::testing::read_file;
using dytrain::testing::have_mpi;

namespace fs = std::filesystem;

const std::string kData = std::string(DYTRAIN_SOURCE_DIR) + "/data/tests/";

// Byte-level text (ids 10..127, uint16 shards) and a model that trains in milliseconds per step.
std::string tiny_config() {
  return "model: {vocab_size: 256, dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 64, max_seq_len: 64}\n"
         "optim: {lr: 0.003, min_lr: 0.0003, warmup_steps: 2}\n"
         "data: {train: " + kData + "text_bytes_train.bin, val: " + kData + "text_bytes_val.bin}\n"
         "train: {micro_batch: 4, seq_len: 32, max_steps: 8, log_every: 1, val_every: 4, val_batches: 2, "
         "device: cpu}\n";
}

class DataCheckCliTest : public ::testing::Test {
 protected:
  int run(int np, const std::string& run_dir, const std::string& flags) { return runs_.run(np, run_dir, flags); }
  std::string log(const std::string& run_dir) { return read_file(dir_ / (run_dir + ".log")); }

  dytrain::testing::CliRuns runs_{tiny_config()};
  const fs::path& dir_ = runs_.dir();
};

TEST_F(DataCheckCliTest, VocabSmallerThanTheDataExits2AndCreatesNoRunDirectory) {
  for (int np : {0, 2}) {
    if (np > 0 && !have_mpi()) continue;
    const std::string name = "small_vocab_np" + std::to_string(np);
    EXPECT_EQ(run(np, name, "--set model.vocab_size=100"), 2) << log(name);
    EXPECT_FALSE(fs::exists(dir_ / name)) << "nothing is written before the data is checked";
    const std::string out = log(name);
    // The first id >= 100 in the shipped text is 'y' (121) at token 22; its largest is 'z' (122).
    for (const char* part : {"text_bytes_train.bin", "token index 22 (byte offset 1068) holds id 121",
                             "vocab_size is 100", "set model.vocab_size to at least 123"}) {
      EXPECT_NE(out.find(part), std::string::npos) << part << " in:\n" << out;
    }
  }
}

// One id of 300 near the end of the validation shard, in windows this run's validation passes (2 batches) never
// read: only a scan of the whole shard finds it.
TEST_F(DataCheckCliTest, BadIdInTheValidationShardExits2AtStart) {
  const std::string val = (dir_ / "val.bin").string();
  fs::copy_file(kData + "text_bytes_val.bin", val);
  {
    std::fstream f(val, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(1024 + 2 * 29000);  // uint16 tokens (magic 20240520)
    const uint16_t bad = 300;
    f.write(reinterpret_cast<const char*>(&bad), 2);
  }
  EXPECT_EQ(run(0, "bad_val", "--set data.val=" + val), 2) << log("bad_val");
  EXPECT_FALSE(fs::exists(dir_ / "bad_val"));
  const std::string out = log("bad_val");
  for (const std::string& part : {val, std::string("token index 29000"), std::string("byte offset 59024"),
                                 std::string("id 300"), std::string("at least 301")}) {
    EXPECT_NE(out.find(part), std::string::npos) << part << " in:\n" << out;
  }
}

// The train shard is cut to 2048 bytes once training runs. Alone, dytrain exits 2 naming the file; under mpirun the
// rank that sees it takes the job down with code 2 (the others may be waiting in a collective).
TEST_F(DataCheckCliTest, ShardTruncatedDuringTheRunExits2NamingTheFile) {
  for (int np : {0, 2}) {
    if (np > 0 && !have_mpi()) continue;
    const std::string name = "cut_np" + std::to_string(np);
    const std::string shard = (dir_ / (name + ".bin")).string(), run_dir = (dir_ / name).string();
    fs::copy_file(kData + "text_bytes_train.bin", shard);
    const std::string script = (dir_ / (name + ".sh")).string();
    std::ofstream(script) << "OMP_NUM_THREADS=1 timeout 120 "
                          << (np > 0 ? std::string(DYTRAIN_MPIEXEC) + " -np " + std::to_string(np) + " " : "")
                          << DYTRAIN_BIN << " train " << runs_.config() << " --run-dir " << run_dir
                          << " --set data.train=" << shard << " --set train.max_steps=1000000 > " << run_dir
                          << ".log 2>&1 &\n"
                             "job=$!\n"
                             "for i in $(seq 1 300); do\n"
                             "  [ -s " << run_dir << "/metrics.jsonl ] && break; sleep 0.2\n"
                             "done\n"
                             "truncate -s 2048 " << shard << "\n"
                             "wait $job\n";
    const int status = std::system(("bash " + script).c_str());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 2) << "bad input, not a signal (SIGBUS: 135) or a timeout (124)\n" << log(name);
    const std::string out = log(name);
    for (const std::string& part : {shard, std::string("changed while the run was reading it"),
                                   std::string("381024 -> 2048 bytes"), std::string("--resume")}) {
      EXPECT_NE(out.find(part), std::string::npos) << part << " in:\n" << out;
    }
  }
}

}  // namespace
