// The model under tensor parallelism, run by mpirun with 2 and 4 ranks forming one tp group: every rank's
// parameters are its blocks of the single-process model's, its loss and gradients equal the single-process model's
// (computed on every rank as the reference), and the gradients of the replicated tensors (DyT alpha, gamma, beta,
// embed_scale) come out identical on every rank, bit for bit.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "parallel/mesh.h"
#include "trainer/model/llama.h"

namespace dytrain {
namespace {

ModelConfig config(int tp, bool tie) {
  ModelConfig m;
  m.vocab_size = 64;
  m.dim = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = std::max(tp, 2);
  m.ffn_dim = 48;
  m.max_seq_len = 16;
  m.dyt_bias = true;
  m.tie_embeddings = tie;
  m.alpha_ffn = 0.5;
  m.init = "fixed";
  m.init_std = 0.2;  // larger than 0.02 so every branch moves the loss visibly
  return m;
}

void check_against_single_process(bool tie) {
  Mesh mesh = make_mesh(make_mesh(1).world_size);  // one tp group of every rank
  Communicator& tp = *mesh.tp_group;
  const ModelConfig cfg = config(tp.size(), tie);
  LlamaModel sharded(cfg, &tp), whole(cfg);
  sharded.init(5);
  whole.init(5);
  const int B = 2, T = 7;
  std::mt19937 rng(3);  // the same tokens on every rank
  std::vector<int32_t> tokens(B * (T + 1));
  for (auto& t : tokens) t = int32_t(rng() % cfg.vocab_size);

  std::vector<cpu::SiteMoments> m_sharded(n_norm_sites(cfg)), m_whole(n_norm_sites(cfg));
  const float loss_sharded = sharded.forward(tokens.data(), B, T, m_sharded.data());
  const float loss_whole = whole.forward(tokens.data(), B, T, m_whole.data());
  sharded.backward(1.0f);
  whole.backward(1.0f);
  // fp32: the row-parallel all-reduce adds tp partial sums where one GEMM adds all terms, a different rounding
  // order: a few ulps of the loss (~4e-7 each) and of each gradient element.
  EXPECT_NEAR(loss_sharded, loss_whole, 2e-6);
  for (int s = 0; s < n_norm_sites(cfg); ++s) EXPECT_NEAR(m_sharded[s].sum_sq, m_whole[s].sum_sq, 1e-4 * m_whole[s].sum_sq);

  std::vector<float> block;
  for (const ParamSpec& s : sharded.table().specs()) {
    const ParamSpec& w = whole.table().at(s.name);
    block.resize(s.numel);
    take_tp_block(block.data(), whole.params().data() + w.offset, s, tp.rank());
    for (int64_t i = 0; i < s.numel; ++i) ASSERT_EQ(sharded.params()[s.offset + i], block[i]) << s.name;
    take_tp_block(block.data(), whole.grads().data() + w.offset, s, tp.rank());
    for (int64_t i = 0; i < s.numel; ++i)
      ASSERT_NEAR(sharded.grads()[s.offset + i], block[i], 1e-6 + 1e-4 * std::fabs(block[i])) << s.name << " " << i;
    if (s.split == TpSplit::replicated) {
      std::vector<float> all(s.numel * tp.size());
      tp.all_gather(all.data(), sharded.grads().data() + s.offset, s.numel);
      for (int r = 1; r < tp.size(); ++r)
        for (int64_t i = 0; i < s.numel; ++i) ASSERT_EQ(all[r * s.numel + i], all[i]) << s.name << " rank " << r;
    }
  }
}

TEST(TensorParallelLlama, MatchesTheSingleProcessModel) { check_against_single_process(false); }
TEST(TensorParallelLlama, MatchesTheSingleProcessModelTied) { check_against_single_process(true); }

}  // namespace
}  // namespace dytrain
