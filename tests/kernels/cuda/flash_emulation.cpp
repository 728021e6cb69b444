// The host emulation of the flash-attention kernels' block loops (flash_emulation.h). Each function below names the
// kernel step it stands for; the tile constants and every decision about which tile and element to keep come from
// kernels/cuda/flash_attention_tiles.h, as in the kernels.
#include "tests/kernels/cuda/flash_emulation.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/flash_attention_tiles.h"

namespace dytrain::test {
namespace {

namespace fl = cuda::flash;
using fl::kBlockK;
using fl::kBlockQ;
using fl::kLanesPerRow;
using fl::kRowSegment;

static_assert(kLanesPerRow == 2, "a row's two half-row partials are combined as the kernels' xor-1 shuffle does");

using Tile = std::vector<float>;  // (64, width) row-major

// load_tile: rows [0, 64) of a token-major tensor, row r at src + r * ld; zeros at and past rows_valid.
Tile load_tile(const float* src, int64_t ld, int D, int rows_valid) {
  Tile tile(static_cast<size_t>(kBlockQ) * D, 0.0f);
  for (int r = 0; r < std::min(kBlockQ, rows_valid); ++r) {
    std::copy_n(src + r * ld, D, &tile[static_cast<size_t>(r) * D]);
  }
  return tile;
}

// warp_scores over all four warps: s (kBlockQ, kBlockK) = X Y^T, x (kBlockQ, D), y (kBlockK, D).
Tile tile_scores(const Tile& x, const Tile& y, int D) {
  Tile s(static_cast<size_t>(kBlockQ) * kBlockK);
  for (int r = 0; r < kBlockQ; ++r) {
    for (int c = 0; c < kBlockK; ++c) {
      float acc = 0.0f;
      for (int d = 0; d < D; ++d) acc += x[static_cast<size_t>(r) * D + d] * y[static_cast<size_t>(c) * D + d];
      s[static_cast<size_t>(r) * kBlockK + c] = acc;
    }
  }
  return s;
}

// acc (kBlockQ, D) += w (kBlockQ, kBlockK) y (kBlockK, D): O += P V and dQ += dS K.
void add_rows_product(Tile& acc, const Tile& w, const Tile& y, int D) {
  for (int r = 0; r < kBlockQ; ++r) {
    for (int c = 0; c < kBlockK; ++c) {
      const float wc = w[static_cast<size_t>(r) * kBlockK + c];
      for (int d = 0; d < D; ++d) acc[static_cast<size_t>(r) * D + d] += wc * y[static_cast<size_t>(c) * D + d];
    }
  }
}

// acc (kBlockK, D) += w^T x, w (kBlockQ, kBlockK), x (kBlockQ, D): dV += P^T dO and dK += dS^T Q.
void add_keys_product(Tile& acc, const Tile& w, const Tile& x, int D) {
  for (int c = 0; c < kBlockK; ++c) {
    for (int r = 0; r < kBlockQ; ++r) {
      const float wc = w[static_cast<size_t>(r) * kBlockK + c];
      for (int d = 0; d < D; ++d) acc[static_cast<size_t>(c) * D + d] += wc * x[static_cast<size_t>(r) * D + d];
    }
  }
}

// store_warp_rows: rows of a (64, D) tile to token rows ld apart, those < rows_valid, times mul[r].
void store_rows(float* dst, int64_t ld, int rows_valid, const Tile& tile, int D, const std::vector<float>& mul) {
  for (int r = 0; r < std::min(kBlockQ, rows_valid); ++r) {
    for (int d = 0; d < D; ++d) dst[r * ld + d] = tile[static_cast<size_t>(r) * D + d] * mul[r];
  }
}

// The forward's row pass over one key tile: mask and scale S in place, the tile max from the two half rows, the
// online-softmax step, P, the running sum, the output row rescaled.
void forward_row_pass(Tile& s, Tile& p, Tile& o, std::vector<float>& run_max, std::vector<float>& run_sum, int q0,
                      int k0, int T, int D, float scale) {
  for (int row = 0; row < kBlockQ; ++row) {
    const int t = q0 + row;
    float* srow = &s[static_cast<size_t>(row) * kBlockK];
    float seg_max[kLanesPerRow];
    for (int seg = 0; seg < kLanesPerRow; ++seg) {
      seg_max[seg] = -INFINITY;
      for (int c = seg * kRowSegment; c < (seg + 1) * kRowSegment; ++c) {
        srow[c] = fl::masked_score(srow[c], scale, fl::key_visible(t, k0 + c, T));
        seg_max[seg] = fmaxf(seg_max[seg], srow[c]);
      }
    }
    const float tile_max = fmaxf(seg_max[0], seg_max[1]);
    const fl::MaxStep step = fl::next_max(run_max[row], tile_max);
    float seg_sum[kLanesPerRow];
    for (int seg = 0; seg < kLanesPerRow; ++seg) {
      seg_sum[seg] = 0.0f;
      for (int c = seg * kRowSegment; c < (seg + 1) * kRowSegment; ++c) {
        const float pc = fl::exp_score(srow[c], step.max);
        p[static_cast<size_t>(row) * kBlockK + c] = pc;
        seg_sum[seg] += pc;
      }
    }
    run_sum[row] = run_sum[row] * step.rescale + (seg_sum[0] + seg_sum[1]);
    run_max[row] = step.max;
    for (int d = 0; d < D; ++d) o[static_cast<size_t>(row) * D + d] *= step.rescale;
  }
}

// The queries of one tile as BackwardTiles::load_queries holds them.
struct QueryTiles {
  Tile q, dout;
  std::vector<float> lse, delta;
};

QueryTiles load_queries(const float* q, const float* dout, const float* lse, const float* delta, int64_t ld,
                        int64_t token0, int b, int h, int Hq, int T, int D, int q0) {
  QueryTiles r;
  r.q = load_tile(q + (token0 + q0) * ld + static_cast<int64_t>(h) * D, ld, D, T - q0);
  r.dout = load_tile(dout + ((token0 + q0) * Hq + h) * D, static_cast<int64_t>(Hq) * D, D, T - q0);
  r.lse.assign(kBlockQ, 0.0f);
  r.delta.assign(kBlockQ, 0.0f);
  for (int i = 0; i < kBlockQ && q0 + i < T; ++i) {
    const int64_t at = (static_cast<int64_t>(b) * Hq + h) * T + q0 + i;
    r.lse[i] = lse[at];
    r.delta[i] = delta[at];
  }
  return r;
}

// BackwardTiles::scores_and_grads: P and dS (kBlockQ, kBlockK) of one (query tile, key tile) pair.
void scores_and_grads(Tile& p, Tile& ds, const QueryTiles& qt, const Tile& k, const Tile& v, int q0, int k0, int T,
                      int D, float scale) {
  const Tile s = tile_scores(qt.q, k, D);
  const Tile dp = tile_scores(qt.dout, v, D);
  p.assign(s.size(), 0.0f);
  ds.assign(s.size(), 0.0f);
  for (int row = 0; row < kBlockQ; ++row) {
    for (int c = 0; c < kBlockK; ++c) {
      const size_t i = static_cast<size_t>(row) * kBlockK + c;
      const float sc = fl::masked_score(s[i], scale, fl::key_visible(q0 + row, k0 + c, T));
      p[i] = fl::probability(sc, qt.lse[row]);
      ds[i] = fl::score_grad(p[i], dp[i], qt.delta[row], scale);
    }
  }
}

}  // namespace

void flash_forward_emulated(float* out, float* lse, const float* q, const float* k, const float* v, int64_t ld, int B,
                            int T, int Hq, int Hkv, int D) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  for (int b = 0; b < B; ++b) {
    const int64_t token0 = static_cast<int64_t>(b) * T;
    for (int h = 0; h < Hq; ++h) {
      const int hk = h / (Hq / Hkv);
      for (int qb = 0; qb < fl::block_count(T, kBlockQ); ++qb) {
        const int q0 = qb * kBlockQ;
        const Tile qs = load_tile(q + (token0 + q0) * ld + static_cast<int64_t>(h) * D, ld, D, T - q0);
        Tile o(static_cast<size_t>(kBlockQ) * D, 0.0f);
        Tile p(static_cast<size_t>(kBlockQ) * kBlockK);
        std::vector<float> run_max(kBlockQ, -INFINITY), run_sum(kBlockQ, 0.0f);
        for (int kb = 0; kb < fl::key_block_end(qb, T); ++kb) {
          const int k0 = kb * kBlockK;
          const Tile ks = load_tile(k + (token0 + k0) * ld + static_cast<int64_t>(hk) * D, ld, D, T - k0);
          const Tile vs = load_tile(v + (token0 + k0) * ld + static_cast<int64_t>(hk) * D, ld, D, T - k0);
          Tile s = tile_scores(qs, ks, D);
          forward_row_pass(s, p, o, run_max, run_sum, q0, k0, T, D, scale);
          add_rows_product(o, p, vs, D);
        }
        std::vector<float> mul(kBlockQ);
        for (int r = 0; r < kBlockQ; ++r) mul[r] = fl::output_scale(run_sum[r]);
        store_rows(out + ((token0 + q0) * Hq + h) * D, static_cast<int64_t>(Hq) * D, T - q0, o, D, mul);
        for (int r = 0; r < kBlockQ && q0 + r < T; ++r) {
          lse[(static_cast<int64_t>(b) * Hq + h) * T + q0 + r] = fl::row_lse(run_max[r], run_sum[r]);
        }
      }
    }
  }
}

void flash_backward_emulated(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                             const float* q, const float* k, const float* v, int64_t ld, int B, int T, int Hq, int Hkv,
                             int D) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int rep = Hq / Hkv;
  const std::vector<float> ones(kBlockQ, 1.0f);

  // flash_delta_kernel: delta (B, Hq, T) = rowsum(dout * out).
  std::vector<float> delta(static_cast<size_t>(B) * Hq * T);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < Hq; ++h) {
        const int64_t row = (static_cast<int64_t>(b) * T + t) * Hq + h;
        float acc = 0.0f;
        for (int d = 0; d < D; ++d) acc += dout[row * D + d] * out[row * D + d];
        delta[(static_cast<size_t>(b) * Hq + h) * T + t] = acc;
      }
    }
  }

  // flash_backward_kv_kernel: a key tile of one kv head over its group's query heads and query tiles.
  for (int b = 0; b < B; ++b) {
    const int64_t token0 = static_cast<int64_t>(b) * T;
    for (int hk = 0; hk < Hkv; ++hk) {
      for (int kb = 0; kb < fl::block_count(T, kBlockK); ++kb) {
        const int k0 = kb * kBlockK;
        const int64_t kv_at = (token0 + k0) * ld + static_cast<int64_t>(hk) * D;
        const Tile ks = load_tile(k + kv_at, ld, D, T - k0);
        const Tile vs = load_tile(v + kv_at, ld, D, T - k0);
        Tile dk_acc(static_cast<size_t>(kBlockK) * D, 0.0f), dv_acc(dk_acc.size(), 0.0f), p, ds;
        for (int r = 0; r < rep; ++r) {
          const int h = hk * rep + r;
          for (int qb = fl::query_block_begin(kb); qb < fl::block_count(T, kBlockQ); ++qb) {
            const int q0 = qb * kBlockQ;
            const QueryTiles qt = load_queries(q, dout, lse, delta.data(), ld, token0, b, h, Hq, T, D, q0);
            scores_and_grads(p, ds, qt, ks, vs, q0, k0, T, D, scale);
            add_keys_product(dv_acc, p, qt.dout, D);
            add_keys_product(dk_acc, ds, qt.q, D);
          }
        }
        store_rows(dv + kv_at, ld, T - k0, dv_acc, D, ones);
        store_rows(dk + kv_at, ld, T - k0, dk_acc, D, ones);
      }
    }
  }

  // flash_backward_q_kernel: a query tile of one head over the key tiles it sees.
  for (int b = 0; b < B; ++b) {
    const int64_t token0 = static_cast<int64_t>(b) * T;
    for (int h = 0; h < Hq; ++h) {
      const int hk = h / rep;
      for (int qb = 0; qb < fl::block_count(T, kBlockQ); ++qb) {
        const int q0 = qb * kBlockQ;
        const QueryTiles qt = load_queries(q, dout, lse, delta.data(), ld, token0, b, h, Hq, T, D, q0);
        Tile dq_acc(static_cast<size_t>(kBlockQ) * D, 0.0f), p, ds;
        for (int kb = 0; kb < fl::key_block_end(qb, T); ++kb) {
          const int k0 = kb * kBlockK;
          const int64_t kv_at = (token0 + k0) * ld + static_cast<int64_t>(hk) * D;
          const Tile ks = load_tile(k + kv_at, ld, D, T - k0);
          const Tile vs = load_tile(v + kv_at, ld, D, T - k0);
          scores_and_grads(p, ds, qt, ks, vs, q0, k0, T, D, scale);
          add_rows_product(dq_acc, ds, ks, D);
        }
        store_rows(dq + (token0 + q0) * ld + static_cast<int64_t>(h) * D, ld, T - q0, dq_acc, D, ones);
      }
    }
  }
}

}  // namespace dytrain::test
