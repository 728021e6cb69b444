// bucket_tokens on the host (no GPU needed): the groups of a known batch, agreement with a straightforward grouping on
// random batches, the vocabulary-range filter and the bad-token error. The CUDA embedding kernels against the CPU op
// (kernels/cpu/embedding.h) on the same bf16 table and dout: a rank's rows of a vocabulary-split table are embedded in
// a zero-padded full table for the CPU op, so tokens outside the rank's rows must give zero rows and no gradient.
// Every batch holds one frequent token at 30% of its positions (a long group); shapes reach the 16-byte path, the
// scalar path (ragged C, misaligned views), several 1024-channel chunks, N = 1 and a realistic (4096, 1024).
//
// Tolerances (u = 2^-24, the fp32 unit roundoff):
// - forward: bit-exact. Both sides compute the fp32 product scale * table[row][c] (one IEEE rounding) and the kernel
//   rounds it to bf16 to nearest even, as bf16_bits does on the host.
// - dtable, rows with k kept positions: the kernel sums k dout values in fp32 and adds scale * sum with one fma, the
//   CPU adds scale * dout k times; each side stays within (k + 1) u (|initial| + |scale| sum |dout|), so
//   (2k + 2) u of that. Rows with no kept position: bit-identical to the initial values.
// - dscale: the kernel dots each group's fp32 sum (error <= (k - 1) u sum |dout|) with the table row in fp32 (one
//   rounding per product, at most 7 per 8-channel thread sum) then fp64, against the CPU's fp64 products and sums:
//   (k_max + 12) u sum |dout table| over the kept positions, + 2 u (|initial| + |result|) for the final roundings.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/embedding.h"
#include "kernels/cuda/embedding.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kF32 = 0x1p-24;       // unit roundoff of fp32
constexpr float kScale = 27.712812f;   // about sqrt(768), the embed_scale init of a 768-wide model
constexpr float kDscaleBefore = 0.5f;  // a previous micro-batch's dscale: the kernel must add to it

// ---- bucket_tokens (host) ---------------------------------------------------------------------------------------

TEST(BucketTokens, GroupsAKnownBatch) {
  const std::vector<int32_t> tokens = {5, 2, 5, 9, 2, 5, 0};  // this rank holds rows [2, 6) of a vocabulary of 10
  cuda::TokenBuckets b;
  cuda::bucket_tokens(&b, tokens.data(), 7, 2, 4, 10);
  EXPECT_EQ(b.rows, (std::vector<int32_t>{0, 3}));  // tokens 2 and 5
  EXPECT_EQ(b.begins, (std::vector<int32_t>{0, 2, 5}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{1, 4, 0, 2, 5}));  // tokens 9 and 0 are another rank's
}

// Groups built one row at a time by scanning the whole batch.
cuda::TokenBuckets scan_grouping(const std::vector<int32_t>& tokens, int64_t vocab_begin, int64_t vocab_rows) {
  cuda::TokenBuckets b;
  b.begins.push_back(0);
  for (int64_t r = 0; r < vocab_rows; ++r) {
    for (size_t n = 0; n < tokens.size(); ++n) {
      if (tokens[n] == vocab_begin + r) b.positions.push_back(static_cast<int32_t>(n));
    }
    if (static_cast<int64_t>(b.positions.size()) > b.begins.back()) {
      b.rows.push_back(static_cast<int32_t>(r));
      b.begins.push_back(static_cast<int32_t>(b.positions.size()));
    }
  }
  return b;
}

TEST(BucketTokens, MatchesAScanOverRandomBatches) {
  std::mt19937 gen(11);
  std::uniform_int_distribution<int32_t> token(0, 999);
  std::vector<int32_t> tokens(5000);
  for (int32_t& t : tokens) t = token(gen);
  for (auto [begin, rows] : {std::pair<int64_t, int64_t>{0, 1000}, {300, 400}, {999, 1}, {500, 0}}) {
    SCOPED_TRACE("vocab_begin=" + std::to_string(begin) + " vocab_rows=" + std::to_string(rows));
    cuda::TokenBuckets got;
    cuda::bucket_tokens(&got, tokens.data(), static_cast<int64_t>(tokens.size()), begin, rows, 1000);
    const cuda::TokenBuckets want = scan_grouping(tokens, begin, rows);
    EXPECT_EQ(got.rows, want.rows);
    EXPECT_EQ(got.begins, want.begins);
    EXPECT_EQ(got.positions, want.positions);
  }
}

TEST(BucketTokens, EmptyBatch) {
  cuda::TokenBuckets b;
  b.positions = {7};  // replaced
  cuda::bucket_tokens(&b, nullptr, 0, 0, 10, 10);
  EXPECT_TRUE(b.positions.empty());
  EXPECT_TRUE(b.rows.empty());
  EXPECT_EQ(b.begins, std::vector<int32_t>{0});
}

TEST(BucketTokens, BadTokenIsNamedByPosition) {
  cuda::TokenBuckets b;
  b.rows = {42};  // must survive a failed call
  for (auto [bad, at] : {std::pair<int32_t, int>{-1, 2}, {10, 0}, {1 << 30, 3}}) {
    std::vector<int32_t> tokens = {1, 2, 3, 4};
    tokens[at] = bad;
    try {
      cuda::bucket_tokens(&b, tokens.data(), 4, 0, 5, 10);
      ADD_FAILURE() << "token " << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      const std::string want = "tokens[" + std::to_string(at) + "] = " + std::to_string(bad);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    EXPECT_EQ(b.rows, std::vector<int32_t>{42});
  }
}

TEST(BucketTokens, RankRowsOutsideTheVocabularyAreRejected) {
  const std::vector<int32_t> tokens = {1, 2};
  cuda::TokenBuckets b;
  EXPECT_THROW(cuda::bucket_tokens(&b, tokens.data(), 2, 6, 5, 10), std::invalid_argument);  // rows [6, 11)
  EXPECT_THROW(cuda::bucket_tokens(&b, tokens.data(), 2, -1, 5, 10), std::invalid_argument);
  EXPECT_THROW(cuda::bucket_tokens(&b, tokens.data(), -1, 0, 5, 10), std::invalid_argument);
  EXPECT_THROW(cuda::bucket_tokens(nullptr, tokens.data(), 2, 0, 5, 10), std::invalid_argument);
}

// ---- kernels --------------------------------------------------------------------------------------------------

struct EmbeddingCase {
  int64_t N;
  int C;
  int64_t vocab_total, vocab_begin, vocab_rows;
  size_t offset;  // elements every device tensor starts after its allocation: 1 makes the views misaligned
};

void PrintTo(const EmbeddingCase& c, std::ostream* os) {
  *os << "N=" << c.N << " C=" << c.C << " vocab " << c.vocab_total << " rows [" << c.vocab_begin << ", "
      << c.vocab_begin + c.vocab_rows << ") offset=" << c.offset;
}

std::string case_name(const testing::TestParamInfo<EmbeddingCase>& info) {
  const EmbeddingCase& c = info.param;
  return "N" + std::to_string(c.N) + "_C" + std::to_string(c.C) + "_V" + std::to_string(c.vocab_total) + "_begin" +
         std::to_string(c.vocab_begin) + "_rows" + std::to_string(c.vocab_rows) + "_off" + std::to_string(c.offset);
}

template <typename T>
std::vector<T> padded(const std::vector<T>& v, size_t offset, T pad) {
  std::vector<T> p(offset, pad);
  p.insert(p.end(), v.begin(), v.end());
  return p;
}

template <typename T>
std::vector<T> unpadded(const std::vector<T>& v, size_t offset) {
  return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(offset), v.end());
}

struct Problem {
  EmbeddingCase c;
  std::vector<int32_t> tokens;       // (N) over the whole vocabulary; 30% are one token of the rank's rows
  std::vector<float> table;          // (vocab_rows, C) bf16 values
  std::vector<float> table_full;     // (vocab_total, C): table at the rank's rows, zero elsewhere
  std::vector<float> dout;           // (N, C) bf16 values
  std::vector<float> dtable_before;  // (vocab_rows, C)

  explicit Problem(const EmbeddingCase& cs) : c(cs) {
    std::mt19937 gen(static_cast<uint32_t>(c.N * 31 + c.C));
    std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(c.vocab_total - 1));
    std::bernoulli_distribution frequent(0.3);
    const int32_t heavy = static_cast<int32_t>(c.vocab_begin + c.vocab_rows / 2);
    tokens.resize(c.N);
    for (int32_t& t : tokens) t = frequent(gen) ? heavy : any(gen);
    table = random_bf16_values(static_cast<size_t>(c.vocab_rows) * c.C, 1, -1.0f, 1.0f);
    table_full.assign(static_cast<size_t>(c.vocab_total) * c.C, 0.0f);
    std::copy(table.begin(), table.end(), table_full.begin() + c.vocab_begin * c.C);
    dout = random_bf16_values(static_cast<size_t>(c.N) * c.C, 2, -1.0f, 1.0f);
    dtable_before = random_floats(table.size(), 3, -1.0f, 1.0f);
  }
  bool kept(int64_t n) const { return tokens[n] >= c.vocab_begin && tokens[n] < c.vocab_begin + c.vocab_rows; }
};

// The device tensors of a Problem, each `offset` elements into its allocation, and the uploaded buckets.
struct DeviceProblem {
  size_t offset;
  DeviceBuffer<int32_t> tokens;
  DeviceBf16 table, dout;
  DeviceBuffer<float> scale;
  cuda::TokenBuckets buckets;
  DeviceBuffer<int32_t> positions, rows, begins;

  explicit DeviceProblem(const Problem& p)
      : offset(p.c.offset),
        tokens(p.tokens),
        table(padded(p.table, offset, 0.0f)),
        dout(padded(p.dout, offset, 0.0f)),
        scale(std::vector<float>{kScale}),
        buckets(make_buckets(p)),
        positions(buckets.positions),
        rows(buckets.rows),
        begins(buckets.begins) {}
  static cuda::TokenBuckets make_buckets(const Problem& p) {
    cuda::TokenBuckets b;
    cuda::bucket_tokens(&b, p.tokens.data(), p.c.N, p.c.vocab_begin, p.c.vocab_rows, p.c.vocab_total);
    return b;
  }
  __nv_bfloat16* table_view() const { return table.get() + offset; }
  __nv_bfloat16* dout_view() const { return dout.get() + offset; }
  int n_groups() const { return static_cast<int>(buckets.rows.size()); }
};

struct BackwardResult {
  std::vector<float> dtable;
  float dscale;
};

// One embedding_backward from dtable_before and kDscaleBefore; with_dscale false passes no dscale and no workspace.
BackwardResult run_backward(const Problem& p, const DeviceProblem& d, bool with_dscale) {
  DeviceBuffer<float> dtable(padded(p.dtable_before, p.c.offset, 0.0f));
  DeviceBuffer<float> dscale(std::vector<float>{kDscaleBefore});
  DeviceBuffer<unsigned char> workspace(cuda::embedding_backward_workspace_bytes(p.c.N, p.c.C));
  cuda::embedding_backward(dtable.get() + p.c.offset, with_dscale ? dscale.get() : nullptr, d.dout_view(),
                           d.table_view(), d.scale.get(), d.positions.get(), d.rows.get(), d.begins.get(), d.n_groups(),
                           p.c.N, p.c.C, with_dscale ? workspace.get() : nullptr, with_dscale ? workspace.size() : 0,
                           nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  return {unpadded(dtable.download(), p.c.offset), dscale.download()[0]};
}

void check_backward(const Problem& p, const DeviceProblem& d, bool with_dscale) {
  const EmbeddingCase& c = p.c;
  std::vector<float> dtable_full(static_cast<size_t>(c.vocab_total) * c.C, 0.0f);
  std::copy(p.dtable_before.begin(), p.dtable_before.end(), dtable_full.begin() + c.vocab_begin * c.C);
  float dscale_ref = kDscaleBefore;
  cpu::embedding_backward(dtable_full.data(), &dscale_ref, p.dout.data(), p.tokens.data(), p.table_full.data(), kScale,
                          c.N, c.C);

  std::vector<int64_t> count(c.vocab_rows, 0);
  std::vector<double> abs_dout(p.table.size(), 0.0);  // (vocab_rows, C): sum of |dout| over the row's positions
  double abs_dot = 0.0;
  for (int64_t n = 0; n < c.N; ++n) {
    if (!p.kept(n)) continue;
    const int64_t r = p.tokens[n] - c.vocab_begin;
    ++count[r];
    for (int k = 0; k < c.C; ++k) {
      abs_dout[r * c.C + k] += std::fabs(p.dout[n * c.C + k]);
      abs_dot += std::fabs(static_cast<double>(p.dout[n * c.C + k]) * p.table[r * c.C + k]);
    }
  }

  const BackwardResult got = run_backward(p, d, with_dscale);
  int failures = 0;
  for (int64_t r = 0; r < c.vocab_rows && failures < 5; ++r) {
    for (int k = 0; k < c.C && failures < 5; ++k) {
      const size_t i = static_cast<size_t>(r) * c.C + k;
      const float want = dtable_full[(c.vocab_begin + r) * c.C + k];
      const double tol = count[r] == 0 ? 0.0
                                       : (2.0 * count[r] + 2.0) * kF32 *
                                             (std::fabs(p.dtable_before[i]) + std::fabs(kScale) * abs_dout[i]);
      if (!(std::fabs(static_cast<double>(got.dtable[i]) - want) <= tol)) {
        ADD_FAILURE() << "dtable[" << r << ", " << k << "] (" << count[r] << " positions): got " << got.dtable[i]
                      << ", reference " << want << ", tolerance " << tol;
        ++failures;
      }
    }
  }
  if (with_dscale) {
    const int64_t k_max = count.empty() ? 0 : *std::max_element(count.begin(), count.end());
    const double tol = (k_max + 12.0) * kF32 * abs_dot + 2 * kF32 * (std::fabs(kDscaleBefore) + std::fabs(dscale_ref));
    EXPECT_NEAR(got.dscale, dscale_ref, tol) << "dscale";
  } else {
    EXPECT_EQ(got.dscale, kDscaleBefore) << "dscale was written although it was not passed";
  }
}

class CudaEmbedding : public CudaTest, public testing::WithParamInterface<EmbeddingCase> {};

TEST_P(CudaEmbedding, ForwardMatchesCpuOpBitForBit) {
  const Problem p(GetParam());
  const EmbeddingCase& c = p.c;
  std::vector<float> want(static_cast<size_t>(c.N) * c.C);
  cpu::embedding_forward(want.data(), p.tokens.data(), p.table_full.data(), kScale, c.N, c.C);

  const DeviceProblem d(p);
  DeviceBf16 out(std::vector<float>(want.size() + c.offset, 9.0f));
  cuda::embedding_forward(out.get() + c.offset, d.tokens.get(), d.table_view(), d.scale.get(), c.N, c.C, c.vocab_begin,
                          c.vocab_rows, nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> all = out.download();
  const std::vector<float> got = unpadded(all, c.offset);
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    if (got[i] != round_bf16(want[i])) {
      ADD_FAILURE() << "out[" << i / c.C << ", " << i % c.C << "] (token " << p.tokens[i / c.C] << "): got " << got[i]
                    << ", want " << round_bf16(want[i]);
      ++failures;
    }
  }
  if (c.offset > 0) {
    EXPECT_EQ(all[0], 9.0f) << "out was written before its view";
  }
}

TEST_P(CudaEmbedding, BackwardMatchesCpuOp) {
  const Problem p(GetParam());
  const DeviceProblem d(p);
  {
    SCOPED_TRACE("with dscale");
    check_backward(p, d, true);
  }
  {
    SCOPED_TRACE("without dscale");
    check_backward(p, d, false);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaEmbedding,
                         testing::Values(EmbeddingCase{1, 8, 16, 0, 16, 0},                // one position
                                         EmbeddingCase{7, 13, 50, 10, 20, 0},              // ragged C
                                         EmbeddingCase{64, 768, 300, 100, 100, 0},         // middle rank of three
                                         EmbeddingCase{64, 768, 300, 100, 100, 1},         // misaligned: scalar path
                                         EmbeddingCase{333, 1000, 97, 0, 97, 0},           // whole vocabulary
                                         EmbeddingCase{1000, 64, 40, 13, 27, 0},           // last rank
                                         EmbeddingCase{20, 2056, 30, 5, 10, 0},            // three chunks, 16-byte
                                         EmbeddingCase{20, 2049, 30, 5, 10, 0},            // three chunks, scalar
                                         EmbeddingCase{3000, 13, 200, 50, 100, 0},         // grid-stride over positions
                                         EmbeddingCase{4096, 1024, 4096, 2048, 2048, 0}),  // realistic
                         case_name);

using CudaEmbeddingCases = CudaTest;

// Many positions of one token in a large batch, twice from the same state: dtable and dscale bit-identical.
TEST_F(CudaEmbeddingCases, BackwardRerunsAreBitIdentical) {
  for (const EmbeddingCase& c :
       {EmbeddingCase{8192, 768, 2000, 0, 2000, 0}, EmbeddingCase{3000, 13, 200, 50, 100, 0}}) {
    SCOPED_TRACE("N=" + std::to_string(c.N) + " C=" + std::to_string(c.C));
    const Problem p(c);
    const DeviceProblem d(p);
    const BackwardResult first = run_backward(p, d, true);
    const BackwardResult second = run_backward(p, d, true);
    EXPECT_TRUE(first.dtable == second.dtable) << "dtable differs between runs";
    EXPECT_EQ(first.dscale, second.dscale) << "dscale differs between runs";
  }
}

// No token of the batch is in this rank's rows: zero output, no group, dtable and dscale untouched.
TEST_F(CudaEmbeddingCases, BatchWithoutTheRanksTokens) {
  Problem p(EmbeddingCase{50, 64, 100, 90, 10, 0});
  for (int32_t& t : p.tokens) t %= 90;
  const DeviceProblem d(p);
  ASSERT_EQ(d.n_groups(), 0);
  DeviceBf16 out(std::vector<float>(50 * 64, 9.0f));
  cuda::embedding_forward(out.get(), d.tokens.get(), d.table_view(), d.scale.get(), 50, 64, 90, 10, nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = out.download();
  EXPECT_EQ(std::count(got.begin(), got.end(), 0.0f), static_cast<std::ptrdiff_t>(got.size()));
  const BackwardResult back = run_backward(p, d, true);
  EXPECT_EQ(back.dtable, p.dtable_before);
  EXPECT_EQ(back.dscale, kDscaleBefore);
}

TEST_F(CudaEmbeddingCases, SmallWorkspaceIsRejected) {
  const Problem p(EmbeddingCase{64, 768, 300, 100, 100, 0});
  const DeviceProblem d(p);
  DeviceBuffer<float> dtable(p.dtable_before), dscale(1);
  const size_t need = cuda::embedding_backward_workspace_bytes(64, 768);
  ASSERT_GT(need, 0u);
  DeviceBuffer<unsigned char> workspace(need);
  try {
    cuda::embedding_backward(dtable.get(), dscale.get(), d.dout_view(), d.table_view(), d.scale.get(),
                             d.positions.get(), d.rows.get(), d.begins.get(), d.n_groups(), 64, 768, workspace.get(),
                             need - 1, nullptr);
    ADD_FAILURE() << "a small workspace accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("embedding_backward_workspace_bytes"), std::string::npos) << e.what();
  }
}

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
TEST(CudaEmbeddingArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced.
  auto* act = reinterpret_cast<__nv_bfloat16*>(uintptr_t{256});
  auto* f32 = reinterpret_cast<float*>(uintptr_t{512});
  auto* ids = reinterpret_cast<int32_t*>(uintptr_t{1024});
  EXPECT_THROW(cuda::embedding_forward(act, ids, act, f32, 4, 0, 0, 10, nullptr), std::invalid_argument);  // C < 1
  EXPECT_THROW(cuda::embedding_forward(act, ids, act, f32, -1, 8, 0, 10, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::embedding_forward(act, ids, act, f32, 4, 8, -1, 10, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::embedding_forward(act, ids, act, nullptr, 4, 8, 0, 10, nullptr), std::invalid_argument);
  EXPECT_NO_THROW(cuda::embedding_forward(act, ids, act, f32, 0, 8, 0, 10, nullptr));  // N = 0

  auto backward = [&](float* dtable, int n_groups, int64_t N, int C) {
    cuda::embedding_backward(dtable, f32, act, act, f32, ids, ids, ids, n_groups, N, C, nullptr, 0, nullptr);
  };
  EXPECT_THROW(backward(f32, 65, 64, 768), std::invalid_argument);  // more groups than positions
  EXPECT_THROW(backward(f32, -1, 64, 768), std::invalid_argument);
  EXPECT_THROW(backward(f32, 1, 64, 0), std::invalid_argument);  // C < 1
  try {
    backward(nullptr, 1, 64, 768);
    ADD_FAILURE() << "a null dtable accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("embedding_backward"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(backward(f32, 0, 64, 768));  // no group: nothing to do, no workspace needed
  EXPECT_EQ(cuda::embedding_backward_workspace_bytes(0, 768), 0u);
  EXPECT_THROW(cuda::embedding_backward_workspace_bytes(8, 0), std::invalid_argument);
}

}  // namespace
}  // namespace dytrain::test
