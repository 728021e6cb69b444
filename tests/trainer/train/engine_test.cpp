// The contract every Engine keeps, checked on each device this host has (the CUDA cases skip without a GPU):
// - a step on a batch lowers the loss on that batch (the update goes downhill) and reports a finite norm;
// - a step whose gradients are not finite reports the non-finite norm and leaves the parameters exactly as they
//   were, so the trainer can stop the run as diverged with nothing corrupted. A NaN loss weight in backward() makes
//   every gradient NaN while the forward loss stays finite: the case of an overflow in the backward pass alone;
// - params_finite() tells whether an update left a non-finite weight (finite gradients, an lr that overflows fp32).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "parallel/mesh.h"
#include "tests/trainer/model/model_test_util.h"
#include "trainer/train/engine.h"

namespace dytrain {
namespace {

class EngineContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    // q/k/v and gate/up widths that are multiples of 64, which the GPU model's fused GEMMs need.
    cfg_.model = testing::tiny_model(NormKind::dyt, /*bias=*/true, /*tie=*/false, /*kv_heads=*/2);
    cfg_.model.dim = 64;
    cfg_.model.ffn_dim = 128;
    cfg_.model.init_std = 0.02;
    cfg_.optim.lr = 1e-2;
    cfg_.train.device = GetParam();
    mesh_ = make_mesh(1);
    try {
      resolve_device(cfg_, mesh_);
    } catch (const std::invalid_argument& e) {
      GTEST_SKIP() << e.what();
    }
    engine_ = make_engine(GetParam(), cfg_, mesh_);
    engine_->init(7);
    tokens_ = testing::random_tokens(kB, kT, cfg_.model.vocab_size, 11);
  }

  float loss() { return engine_->forward(tokens_.data(), kB, kT, nullptr); }

  static constexpr int kB = 4, kT = 16;
  Config cfg_;
  Mesh mesh_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> tokens_;
};

TEST_P(EngineContract, AStepGoesDownhill) {
  engine_->zero_grad();
  const float before = loss();
  engine_->backward(1.0f);
  const double norm = engine_->update(1.0);
  EXPECT_TRUE(std::isfinite(norm));
  EXPECT_GT(norm, 0.0);
  EXPECT_LT(loss(), before);
}

TEST_P(EngineContract, NonFiniteGradientsLeaveTheParametersAlone) {
  engine_->zero_grad();
  const float before = loss();
  const std::vector<float> alphas = engine_->site_alphas();
  engine_->backward(std::numeric_limits<float>::quiet_NaN());
  EXPECT_FALSE(std::isfinite(engine_->update(1.0)));
  EXPECT_EQ(engine_->site_alphas(), alphas);
  EXPECT_EQ(loss(), before);  // bit for bit: no parameter moved
}

TEST_P(EngineContract, ParamsFiniteSeesAnUpdateThatOverflows) {
  EXPECT_TRUE(engine_->params_finite());
  engine_->zero_grad();
  loss();
  engine_->backward(1.0f);
  ASSERT_TRUE(std::isfinite(engine_->update(1.0)));
  EXPECT_TRUE(engine_->params_finite());
  engine_->zero_grad();
  loss();
  engine_->backward(1.0f);
  // lr 1e-2 x 1e41 rounds to an fp32 inf: every weight with a non-zero gradient becomes inf or NaN.
  ASSERT_TRUE(std::isfinite(engine_->update(1e41)));
  EXPECT_FALSE(engine_->params_finite());
}

INSTANTIATE_TEST_SUITE_P(Devices, EngineContract, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace dytrain
