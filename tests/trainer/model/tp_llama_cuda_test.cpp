// The GPU model under tensor parallelism, run by mpirun with 2 and 4 ranks forming one tp group that shares GPU 0
// through the staged device communicator (parallel.gpu_comm: mpi; NCCL refuses two ranks on one GPU): every rank's
// loss, site moments and gradient blocks against the CPU model of the whole (fp32, computed on every rank as the
// reference), and the gradients of the replicated tensors (DyT alpha, gamma, beta, embed_scale) identical on every
// rank, bit for bit. Skips without a GPU (every rank sees the same, so none waits in a collective alone).
//
// Tolerances: those of llama_cuda_test.cpp (the GPU model against the CPU model, bf16 reasoning there). Tensor
// parallelism adds one bf16 rounding of each partial sum before the tp sum, a few more roundings of the same size
// on a chain of a few dozen, inside those bounds; a missing or doubled tp sum, residual or vocabulary offset is O(1).
#include <cmath>
#include <random>
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

TEST(TensorParallelLlamaCuda, MatchesTheCpuModel) { check_against_the_cpu_model(NormKind::dyt, false); }
TEST(TensorParallelLlamaCuda, MatchesTheCpuModelTied) { check_against_the_cpu_model(NormKind::dyt, true); }
TEST(TensorParallelLlamaCuda, MatchesTheCpuModelRmsNorm) { check_against_the_cpu_model(NormKind::rmsnorm, false); }

}  // namespace
}  // namespace dytrain
