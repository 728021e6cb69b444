// The GPU model under tensor parallelism, run by mpirun with 2 and 4 ranks forming one tp group that shares GPU 0
// through the staged device communicator (parallel.gpu_comm: mpi; NCCL refuses two ranks on one GPU): every rank's
// loss, site moments and gradient blocks against the CPU model of the whole (fp32, computed on every rank as the
// reference), and the gradients of the replicated tensors (DyT alpha, gamma, beta, embed_scale) identical on every
// rank, bit for bit. Skips without a GPU (every rank sees the same, so none waits in a collective alone).
//
// Then a large-residual configuration with the staged backend emulating NCCL's per-hop bf16 rounding, against the
// one-rank GPU run: the tp residual must be added once, after the tp sum.
//
// Tolerances: those of llama_cuda_test.cpp (the GPU model against the CPU model, bf16 reasoning there). Tensor
// parallelism adds one bf16 rounding of each partial sum before the tp sum, a few more roundings of the same size
// on a chain of a few dozen, inside those bounds; a missing or doubled tp sum, residual or vocabulary offset is O(1).
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "kernels/cuda/check.h"
#include "parallel/device_comm.h"
#include "parallel/mesh.h"
#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/cuda/llama_cuda.h"
#include "trainer/model/llama.h"

namespace dytrain {
namespace {

// Sizes every tp of 1, 2 and 4 divides: vocab 256, and at least as many kv heads as ranks.
ModelConfig config(int tp, NormKind norm, bool tie) {
  return testing::gpu_model(norm, /*bias=*/norm == NormKind::dyt, tie, /*kv_heads=*/std::max(tp, 2),
                            /*vocab_size=*/256);
}

void check_against_the_cpu_model(NormKind norm, bool tie) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  Mesh mesh = make_mesh(make_mesh(1).world_size);  // one tp group of every rank
  Communicator& tp_host = *mesh.tp_group;
  std::unique_ptr<DeviceCommunicator> tp = make_staged_communicator(tp_host, /*device=*/0);
  const ModelConfig cfg = config(tp_host.size(), norm, tie);
  cudaStream_t stream = nullptr;
  DYTRAIN_CUDA_CHECK(cudaStreamCreate(&stream));
  {
    LlamaModelCuda sharded(cfg, stream, /*flat_elems=*/0, tp.get());
    LlamaModel whole(cfg);
    sharded.init(5);
    whole.init(5);
    const int B = 3, T = 40;
    const std::vector<int32_t> tokens = testing::random_tokens(B, T, cfg.vocab_size, 7);  // the same on every rank

    std::vector<cpu::SiteMoments> m_sharded(n_norm_sites(cfg)), m_whole(n_norm_sites(cfg));
    const float loss_sharded = sharded.forward(tokens.data(), B, T, m_sharded.data());
    const float loss_whole = whole.forward(tokens.data(), B, T, m_whole.data());
    EXPECT_NEAR(loss_sharded, loss_whole, 0.01 * loss_whole);
    for (size_t s = 0; s < m_whole.size(); ++s) {
      const double std_whole = std::sqrt(m_whole[s].sum_sq / m_whole[s].count);
      EXPECT_NEAR(std::sqrt(m_sharded[s].sum_sq / m_sharded[s].count), std_whole, 0.02 * std_whole) << "site " << s;
    }
    sharded.backward(1.0f);
    whole.backward(1.0f);

    std::vector<float> grads(sharded.table().total());
    DYTRAIN_CUDA_CHECK(cudaMemcpy(grads.data(), sharded.grads(), grads.size() * sizeof(float),
                                  cudaMemcpyDeviceToHost));
    std::vector<float> block;
    for (const ParamSpec& s : sharded.table().specs()) {
      const ParamSpec& w = whole.table().at(s.name);
      block.resize(s.numel);
      take_tp_block(block.data(), whole.grads().data() + w.offset, s, tp_host.rank());
      EXPECT_LT(testing::relative_l2(grads.data() + s.offset, block.data(), s.numel), 0.05) << s.name;
      if (s.split == TpSplit::replicated) {
        std::vector<float> all(s.numel * tp_host.size());
        tp_host.all_gather(all.data(), grads.data() + s.offset, s.numel);
        for (int r = 1; r < tp_host.size(); ++r)
          for (int64_t i = 0; i < s.numel; ++i) ASSERT_EQ(all[r * s.numel + i], all[i]) << s.name << " rank " << r;
      }
    }
  }
  cudaStreamDestroy(stream);
}

// Issue 19, finding 1: a large residual against small branch updates, with the staged backend rounding its tp sums
// as NCCL's ring does (StagedBf16Sum::ring). The embedding is scaled so the residual stream is ~100 (bf16 spacing 0.5
// there), alpha 0.01 keeps DyT out of saturation at that scale, and the o and down weights are scaled so each branch
// adds ~0.6 RMS. The measure: the update of the residual stream over the whole model, x_L - x_0, of the tp run
// against the one-rank GPU run (its GEMM epilogue rounds residual + branch once).
// Tolerance: with the residual added once after the tp sum, the two differ only where the branch's partial roundings
// (~2^-9 at 0.6) or their echo through later layers move a rounding of the residual across a tie: ~0.06 - 0.14 in a
// host simulation of these magnitudes (4 residual adds, branch noise 0 - 2%). With the residual added on rank 0
// before the ring sum, every hop after rank 0 rounds at spacing 0.5 again: ~0.53 at tp 2 and ~0.63 at tp 4 in the
// same simulation (bf16_ring_sum_test.cpp shows the same effect against the exact sum). 0.25 lies between.
TEST(TensorParallelLlamaCuda, LargeResidualKeepsSmallBranchUpdatesUnderRingRounding) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) GTEST_SKIP() << "no CUDA device";
  Mesh mesh = make_mesh(make_mesh(1).world_size);
  Communicator& tp_host = *mesh.tp_group;
  std::unique_ptr<DeviceCommunicator> tp = make_staged_communicator(tp_host, /*device=*/0, StagedBf16Sum::ring);
  ModelConfig cfg = config(tp_host.size(), NormKind::dyt, false);
  cfg.alpha_attn = cfg.alpha_ffn = cfg.alpha_final = 0.01;
  cudaStream_t stream = nullptr;
  DYTRAIN_CUDA_CHECK(cudaStreamCreate(&stream));
  {
    LlamaModelCuda one(cfg, stream), sharded(cfg, stream, /*flat_elems=*/0, tp.get());
    one.init(5);
    std::vector<float> whole(one.table().total());
    one.download_params(whole.data());
    const int B = 2, T = 32, L = cfg.n_layers;
    const std::vector<int32_t> tokens = testing::random_tokens(B, T, cfg.vocab_size, 9);  // the same on every rank
    auto rms = [](const std::vector<float>& v) {
      double s = 0.0;
      for (float x : v) s += double(x) * x;
      return std::sqrt(s / double(v.size()));
    };
    auto scale = [&](const std::string& name, double factor) {
      const ParamSpec& s = one.table().at(name);
      for (int64_t j = 0; j < s.numel; ++j) whole[s.offset + j] = float(whole[s.offset + j] * factor);
    };
    // The residual stream's update, x_L - x_0, of a model's last forward.
    auto update = [&](LlamaModelCuda& m) {
      m.forward(tokens.data(), B, T, nullptr);
      std::vector<float> u = m.residual_stream(L);
      const std::vector<float> x0 = m.residual_stream(0);
      for (size_t j = 0; j < u.size(); ++j) u[j] -= x0[j];
      return u;
    };

    // Scale the embedding to ~100, then the o and down weights so that each of the 2 L residual adds is ~0.6.
    one.forward(tokens.data(), B, T, nullptr);
    scale("model.embed_tokens.weight", 100.0 / rms(one.residual_stream(0)));
    one.upload_params(whole.data());
    const double per_add = rms(update(one)) / std::sqrt(2.0 * L);
    for (int i = 0; i < L; ++i)
      for (const char* w : {"self_attn.o_proj", "mlp.down_proj"})
        scale("model.layers." + std::to_string(i) + "." + w + ".weight", 0.6 / per_add);
    one.upload_params(whole.data());
    std::vector<float> mine(sharded.table().total());
    for (const ParamSpec& s : sharded.table().specs())
      take_tp_block(mine.data() + s.offset, whole.data() + one.table().at(s.name).offset, s, tp_host.rank());
    sharded.upload_params(mine.data());

    const std::vector<float> want = update(one), got = update(sharded);
    const double x_rms = rms(one.residual_stream(L)), add_rms = rms(want) / std::sqrt(2.0 * L);
    ASSERT_GT(x_rms, 80.0) << "the configuration is not the large-residual one";
    ASSERT_LT(x_rms, 125.0) << "the configuration is not the large-residual one";
    ASSERT_GT(add_rms, 0.3) << "branch updates not ~0.6";
    ASSERT_LT(add_rms, 1.2) << "branch updates not ~0.6";
    EXPECT_LT(testing::relative_l2(got.data(), want.data(), int64_t(want.size())), 0.25)
        << "tp " << tp_host.size() << ": residual RMS " << x_rms << ", update per residual add " << add_rms;
  }
  cudaStreamDestroy(stream);
}

TEST(TensorParallelLlamaCuda, MatchesTheCpuModel) { check_against_the_cpu_model(NormKind::dyt, false); }
TEST(TensorParallelLlamaCuda, MatchesTheCpuModelTied) { check_against_the_cpu_model(NormKind::dyt, true); }
TEST(TensorParallelLlamaCuda, MatchesTheCpuModelRmsNorm) { check_against_the_cpu_model(NormKind::rmsnorm, false); }

}  // namespace
}  // namespace dytrain
