// The GPU model against the CPU model (the fp32 reference) from the same initial parameters: loss, every parameter
// gradient, the site moments and the calibrated alphas; and bit-identical reruns. Skips without a GPU.
//
// Tolerances. The GPU model rounds every activation, activation gradient and weight copy to bf16 (8 significant bits,
// relative rounding error <= 2^-9 = 0.2%) and chains a few dozen such roundings from the embedding to the loss and
// back. Independent rounding errors add in quadrature: ~sqrt(40) x 0.2% ~ 1.2% relative error in a gradient tensor
// as a whole (L2), ~0.5% in the loss. The bounds below are 2-4x that: wide enough for bf16, far below the error of
// any wrong index, transposition or missing term (which is O(1), tested by perturbing the reference).
#include <cmath>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "kernels/cuda/check.h"
#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/cuda/llama_cuda.h"
#include "trainer/model/llama.h"

namespace dytrain {
namespace {

class LlamaCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
    DYTRAIN_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

using testing::random_tokens;
using testing::relative_l2;

// vocab 250: logits rows that are not a multiple of 8 elements.
ModelConfig small(NormKind norm, bool bias, bool tie) {
  return testing::gpu_model(norm, bias, tie, /*kv_heads=*/2, /*vocab_size=*/250);
}

// The same with model.attention: flash, which needs head_dim 64: two query heads on one kv head (GQA), T up to 128
// (two query tiles).
ModelConfig small_flash(NormKind norm, bool bias, bool tie) {
  ModelConfig m = testing::gpu_model(norm, bias, tie, /*kv_heads=*/1, /*vocab_size=*/250);
  m.dim = 128;
  m.n_heads = 2;
  m.ffn_dim = 256;
  m.max_seq_len = 128;
  m.attention = "flash";
  return m;
}

std::vector<float> download(const float* device, int64_t n) {
  std::vector<float> host(n);
  DYTRAIN_CUDA_CHECK(cudaMemcpy(host.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

struct Case {
  NormKind norm;
  bool bias, tie;
  bool flash = false;  // model.attention: flash (small_flash)
};

class LlamaCudaMatchesCpu : public LlamaCuda, public ::testing::WithParamInterface<Case> {};

TEST_P(LlamaCudaMatchesCpu, LossGradientsAndMoments) {
  const Case c = GetParam();
  const ModelConfig cfg = c.flash ? small_flash(c.norm, c.bias, c.tie) : small(c.norm, c.bias, c.tie);
  const int B = 3, T = c.flash ? 100 : 40;  // ragged T: not a multiple of any tile size
  const std::vector<int32_t> tokens = random_tokens(B, T, cfg.vocab_size, 7);
  LlamaModel cpu(cfg);
  LlamaModelCuda gpu(cfg, stream_);
  cpu.init(11);
  gpu.init(11);
  ASSERT_EQ(download(gpu.params(), gpu.table().total()), cpu.params());  // the same init, byte for byte

  std::vector<cpu::SiteMoments> m_cpu(n_norm_sites(cfg)), m_gpu(n_norm_sites(cfg));
  const float loss_cpu = cpu.forward(tokens.data(), B, T, m_cpu.data());
  const float loss_gpu = gpu.forward(tokens.data(), B, T, m_gpu.data());
  EXPECT_NEAR(loss_gpu, loss_cpu, 0.01 * loss_cpu);
  cpu.backward(1.0f);
  gpu.backward(1.0f);
  const std::vector<float> g_gpu = download(gpu.grads(), gpu.table().total());
  for (const ParamSpec& s : cpu.table().specs()) {
    const double err = relative_l2(g_gpu.data() + s.offset, cpu.grads().data() + s.offset, s.numel);
    EXPECT_LT(err, 0.05) << s.name;
  }
  for (size_t s = 0; s < m_cpu.size(); ++s) {
    EXPECT_EQ(m_gpu[s].count, m_cpu[s].count) << "site " << s;
    const double std_cpu = std::sqrt(m_cpu[s].sum_sq / m_cpu[s].count);
    EXPECT_NEAR(std::sqrt(m_gpu[s].sum_sq / m_gpu[s].count), std_cpu, 0.02 * std_cpu) << "site " << s;
    // sat counts elements past a threshold: bf16 inputs move a few across it.
    EXPECT_NEAR(m_gpu[s].saturated, m_cpu[s].saturated, 0.02 * m_cpu[s].count + 2) << "site " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, LlamaCudaMatchesCpu,
                         ::testing::Values(Case{NormKind::dyt, false, false}, Case{NormKind::dyt, true, true},
                                         Case{NormKind::rmsnorm, false, false},
                                         Case{NormKind::dyt, false, false, true}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(to_string(info.param.norm)) + (info.param.bias ? "_bias" : "") +
                                  (info.param.tie ? "_tied" : "") + (info.param.flash ? "_flash" : "");
                         });

TEST_F(LlamaCuda, GradientsAccumulateOverMicroBatches) {
  // Two backward passes at weight 1/2 each equal one at weight 1 on the same batch, up to fp32 rounding (the
  // parameter gradients accumulate in fp32; the bf16 activation gradients are the same halves of the same values).
  const ModelConfig cfg = small(NormKind::dyt, false, false);
  const std::vector<int32_t> tokens = random_tokens(2, 32, cfg.vocab_size, 3);
  LlamaModelCuda gpu(cfg, stream_);
  gpu.init(5);
  gpu.forward(tokens.data(), 2, 32, nullptr);
  gpu.backward(1.0f);
  const std::vector<float> once = download(gpu.grads(), gpu.table().total());
  gpu.zero_grad();
  for (int i = 0; i < 2; ++i) {
    gpu.forward(tokens.data(), 2, 32, nullptr);
    gpu.backward(0.5f);
  }
  const std::vector<float> twice = download(gpu.grads(), gpu.table().total());
  for (const ParamSpec& s : gpu.table().specs())
    EXPECT_LT(relative_l2(twice.data() + s.offset, once.data() + s.offset, s.numel), 1e-5) << s.name;
}

TEST_F(LlamaCuda, RerunsAreBitIdentical) {
  for (const ModelConfig& cfg : {small(NormKind::dyt, true, false), small_flash(NormKind::dyt, true, false)}) {
    SCOPED_TRACE("model.attention: " + cfg.attention);
    const std::vector<int32_t> tokens = random_tokens(2, 48, cfg.vocab_size, 9);
    std::vector<float> grads[2];
    float losses[2];
    for (int run = 0; run < 2; ++run) {
      LlamaModelCuda gpu(cfg, stream_);
      gpu.init(21);
      losses[run] = gpu.forward(tokens.data(), 2, 48, nullptr);
      gpu.backward(1.0f);
      grads[run] = download(gpu.grads(), gpu.table().total());
    }
    EXPECT_EQ(losses[0], losses[1]);
    EXPECT_TRUE(grads[0] == grads[1]);
  }
}

TEST_F(LlamaCuda, CalibratedAlphasMatchTheCpu) {
  const ModelConfig cfg = small(NormKind::dyt, false, false);
  const std::vector<int32_t> tokens = random_tokens(2, 32, cfg.vocab_size, 4);
  LlamaModel cpu(cfg);
  LlamaModelCuda gpu(cfg, stream_);
  cpu.init(2);
  gpu.init(2);
  cpu.calibrate_alphas(tokens.data(), 2, 32, 0.5);
  gpu.calibrate_alphas(tokens.data(), 2, 32, 0.5);
  const std::vector<float> alphas = gpu.site_alphas();
  for (int s = 0; s < n_norm_sites(cfg); ++s) {
    const double alpha0 = s == 2 * cfg.n_layers ? cfg.alpha_final : s % 2 == 0 ? cfg.alpha_attn : cfg.alpha_ffn;
    EXPECT_NE(alphas[s], float(alpha0)) << "site " << s << " not calibrated";
    EXPECT_NEAR(alphas[s], cpu.site_alpha(s), 0.02 * cpu.site_alpha(s)) << "site " << s;  // std of bf16 inputs
  }
}

TEST_F(LlamaCuda, RefusesLayoutsItCannotFuse) {
  ModelConfig cfg = small(NormKind::dyt, false, false);
  cfg.dim = 36;  // q_proj holds 36 x 36 = 1296 elements, not a multiple of 64: k_proj does not follow it directly
  cfg.n_heads = 4;
  cfg.n_kv_heads = 2;
  EXPECT_THROW(LlamaModelCuda(cfg, stream_), std::invalid_argument);
}

}  // namespace
}  // namespace dytrain
