// The host memory plan against the tensors the CPU model really allocates (the parameter table), and the refusal's
// message: the estimate, the available memory and the key of the largest part.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/layout.h"
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

}  // namespace
}  // namespace dytrain
