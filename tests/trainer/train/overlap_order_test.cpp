// The overlapped data-parallel average (grad_sync.h) in the order the engines use it: the last micro-batch's backward
// starts each layer's all-reduce through the model's hook as soon as the layer is done, finish() starts the rest and
// waits. With an all-reduce that runs late and poisons its buffer until then (tests/common/late_comm.h), the result
// must equal the blocking average bit for bit: a backward pass that read or wrote a range after handing it over would
// show as NaN or as a lost gradient. One process (the average over one rank is the identity), on the CPU model the
// CUDA engine's hooks mirror.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "parallel/comm.h"
#include "tests/common/late_comm.h"
#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/llama.h"
#include "trainer/train/grad_sync.h"

namespace dytrain {
namespace {

// Gradients of two micro-batches (the accumulation the engines do), the second with the overlap hooks when given.
std::vector<float> gradients(const ModelConfig& cfg, Communicator* late, int bucket_mb, int64_t* ranges_started) {
  LlamaModel model(cfg);
  model.init(5);
  model.zero_grad();
  const int B = 3, T = 8;
  for (int micro = 0; micro < 2; ++micro) {
    const std::vector<int32_t> tokens = testing::random_tokens(B, T, cfg.vocab_size, 40 + micro);
    model.forward(tokens.data(), B, T, nullptr);
    if (micro == 1 && late) {
      OverlappedGradAverage average(*late, model.grads().data(), model.table().total(), bucket_mb);
      int64_t ranges = 0;
      model.set_grads_ready([&](int64_t begin, int64_t end) {
        average.start(begin, end);
        ++ranges;
      });
      model.backward(0.5f);
      model.set_grads_ready(nullptr);
      *ranges_started = ranges;
      average.finish();
    } else {
      model.backward(0.5f);
    }
  }
  return model.grads();
}

TEST(OverlapOrder, LateAllReducesGiveTheBlockingResultBitForBit) {
  for (bool tie : {false, true}) {
    SCOPED_TRACE(tie ? "tied embeddings" : "untied");
    const ModelConfig cfg = testing::tiny_model(NormKind::dyt, /*bias=*/true, tie, /*kv_heads=*/2);
    const std::vector<float> reference = gradients(cfg, nullptr, 25, nullptr);
    std::unique_ptr<Communicator> self = make_self_communicator();
    testing::LateCommunicator late(*self);
    int64_t ranges = 0;
    const std::vector<float> overlapped = gradients(cfg, &late, 25, &ranges);
    EXPECT_EQ(ranges, cfg.n_layers) << "one hook call per layer";
    EXPECT_EQ(late.started(), 0) << "finish() waited for every range";
    ASSERT_EQ(overlapped.size(), reference.size());
    EXPECT_EQ(std::memcmp(overlapped.data(), reference.data(), reference.size() * sizeof(float)), 0);
  }
}

// The fake itself: a reader of a started range sees poison, a writer loses its write, so the test above can fail.
TEST(OverlapOrder, TheLateCommunicatorPoisonsAndOverwritesStartedRanges) {
  std::unique_ptr<Communicator> self = make_self_communicator();
  testing::LateCommunicator late(*self);
  std::vector<float> buf = {1, 2, 3};
  late.all_reduce_start(buf.data(), 3, ReduceOp::avg);
  EXPECT_TRUE(std::isnan(buf[1]));
  buf[2] = 7;  // a write after the hand-over
  late.synchronize();
  EXPECT_EQ(buf, (std::vector<float>{1, 2, 3}));
}

}  // namespace
}  // namespace dytrain
