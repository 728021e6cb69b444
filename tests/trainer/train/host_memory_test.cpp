// The host memory plan against the tensors the CPU model really allocates (the parameter table), and the refusal's
// message: the estimate, the available memory and the key of the largest part.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "tests/common/temp_dir.h"
#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/layout.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/host_memory.h"

namespace dytrain {
namespace {

double part(const std::vector<HostMemoryPart>& plan, const std::string& what) {
  for (const HostMemoryPart& p : plan)
    if (p.what == what) return p.bytes;
  ADD_FAILURE() << "no part " << what;
  return 0;
}

Config small_config() {
  Config cfg;
  cfg.model = testing::tiny_model(NormKind::dyt, /*bias=*/true, /*tie=*/false, /*kv_heads=*/2);
  cfg.model.vocab_size = 38;  // tp 2 splits the vocabulary
  cfg.train.micro_batch = 4;
  cfg.train.seq_len = 16;
  return cfg;
}

// Parameters, gradients and moments are counted from the config alone; they must match the table the model
// allocates (its 64-element alignment gaps aside) for each tp rank's share.
TEST(HostMemory, ParameterBytesMatchTheModelTable) {
  for (bool tie : {false, true})
    for (int tp : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << "tie " << tie << " tp " << tp);
      Config cfg = small_config();
      cfg.model.tie_embeddings = tie;
      const double table = double(LlamaLayout(cfg.model, 0, tp).table.parameters());
      const auto plan = plan_host_memory(cfg, "cpu", 1, tp);
      EXPECT_NEAR(part(plan, "parameters"), 4 * table, 1e-9 * table);
      EXPECT_EQ(part(plan, "gradients"), part(plan, "parameters"));
      EXPECT_EQ(part(plan, "AdamW moments"), 2 * part(plan, "parameters"));
    }
}

TEST(HostMemory, Zero1ShardsTheMomentsAndActivationsScaleWithTheBatch) {
  Config cfg = small_config();
  const double moments = part(plan_host_memory(cfg, "cpu", 4, 1), "AdamW moments");
  cfg.parallel.zero1 = true;
  EXPECT_DOUBLE_EQ(part(plan_host_memory(cfg, "cpu", 4, 1), "AdamW moments"), moments / 4);
  const double acts = part(plan_host_memory(cfg, "cpu", 1, 1), "activations");
  cfg.train.micro_batch *= 2;
  EXPECT_NEAR(part(plan_host_memory(cfg, "cpu", 1, 1), "activations"), 2 * acts, 0.01 * acts);
}

TEST(HostMemory, RefusalNamesTheEstimateAndTheKeyOfTheLargestPart) {
  Config cfg = small_config();
  cfg.train.micro_batch = 1000000000;
  const auto plan = plan_host_memory(cfg, "cpu", 1, 1);
  try {
    check_host_memory(plan, 2, 8.0 * (1 << 30));
    FAIL() << "a billion sequences fit in 8 GiB";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    for (const char* piece : {"GiB of host memory per rank", "x 2 ranks on this host", "8 GiB are available",
                              "lower train.micro_batch or train.seq_len"})
      EXPECT_NE(msg.find(piece), std::string::npos) << piece << " not in: " << msg;
  }
  EXPECT_NO_THROW(check_host_memory(plan_host_memory(small_config(), "cpu", 1, 1), 2, 8.0 * (1 << 30)));
  EXPECT_NO_THROW(check_host_memory(plan, 1, 0.0));  // unknown availability: no check
}

// A checkpoint save stages bounded rounds (distributed_checkpoint.h), not whole-model copies: the plan's part is the
// bound of the table the model builds (whose widest gathered row the plan derives from the config), the same for a
// model of any depth, and about 12 MiB for a 7B model, where whole copies of parameters and moments took ~28 bytes
// per parameter (~190 GB) on every rank.
TEST(HostMemory, CheckpointStagingIsTheStreamingBound) {
  for (int tp : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "tp " << tp);
    Config cfg = small_config();
    cfg.model.vocab_size = 40;
    cfg.model.dim = 3 << 18;  // tp x dim above a round: the row sets the bound
    const ParamTable table = LlamaLayout(cfg.model, 0, tp).table;
    const double bound = checkpoint_staging_bytes(double(widest_checkpoint_row(table, tp)));
    EXPECT_DOUBLE_EQ(part(plan_host_memory(cfg, "cpu", 2, tp), "checkpoint staging"), bound);
    EXPECT_EQ(bound, 12.0 * (tp == 1 ? kCheckpointRoundFloats : tp * cfg.model.dim));
    cfg.model.n_layers *= 4;
    EXPECT_DOUBLE_EQ(part(plan_host_memory(cfg, "cpu", 2, tp), "checkpoint staging"), bound);
  }
  Config big = small_config();
  big.model.vocab_size = 32000;
  big.model.dim = 4096;
  big.model.n_layers = 32;
  big.model.n_heads = 32;
  big.model.ffn_dim = 11008;
  for (int tp : {1, 8}) EXPECT_EQ(part(plan_host_memory(big, "cpu", 8, tp), "checkpoint staging"), 12.0 * (1 << 20));
}

// On the GPU the host holds only the token batch and the checkpoint staging: a batch that fits the device plan must
// not be refused for host activations the GPU run never allocates.
TEST(HostMemory, CudaPlansOnlyWhatStaysOnTheHost) {
  Config cfg = small_config();
  cfg.train.micro_batch = 100000;
  double total = 0;
  for (const HostMemoryPart& p : plan_host_memory(cfg, "cuda", 1, 1)) total += p.bytes;
  EXPECT_LT(total, 1e8);
  EXPECT_GT(available_host_bytes(), 0.0);  // this host reports /proc/meminfo
}

// The tightest memory cgroup of the process, v2 or v1, nested or not, counts its anonymous memory as used (not the page
// cache it is charged for); unlimited cgroups leave MemAvailable.
TEST(HostMemory, AvailableMemoryIsTheTightestNestedCgroup) {
  testing::TempDir root;
  const double GiB = double(1 << 30);
  root.write("proc/meminfo", "MemTotal: 100 kB\nMemAvailable: 67108864 kB\n");  // 64 GiB
  root.write("proc/self/cgroup", "4:memory:/slurm/job7\n0::/slurm/job7/step0\n");
  EXPECT_DOUBLE_EQ(available_host_bytes_under(root.path().string()), 64 * GiB);  // no limits anywhere
  // v2: the job's limit 32 GiB with 10 GiB anonymous and 15 GiB of page cache charged; the step below is unlimited.
  root.write("sys/fs/cgroup/slurm/job7/memory.max", std::to_string(int64_t(32 * GiB)) + "\n");
  root.write("sys/fs/cgroup/slurm/job7/memory.stat", "anon " + std::to_string(int64_t(10 * GiB)) +
                                                          "\nfile " + std::to_string(int64_t(15 * GiB)) + "\n");
  root.write("sys/fs/cgroup/slurm/job7/step0/memory.max", "max\n");
  EXPECT_DOUBLE_EQ(available_host_bytes_under(root.path().string()), 22 * GiB);
  // v1, tighter: 16 GiB with 4 GiB of RSS.
  root.write("sys/fs/cgroup/memory/slurm/job7/memory.limit_in_bytes", std::to_string(int64_t(16 * GiB)) + "\n");
  root.write("sys/fs/cgroup/memory/slurm/job7/memory.stat", "cache 1\ntotal_rss " + std::to_string(int64_t(4 * GiB)) +
                                                                 "\n");
  EXPECT_DOUBLE_EQ(available_host_bytes_under(root.path().string()), 12 * GiB);
}

}  // namespace
}  // namespace dytrain
