// The CUDA cross-entropy kernels against the CPU op (kernels/cpu/cross_entropy.h, fp32 on the same bf16 logits) and an
// independent double-precision log-sum-exp: losses, lse and dlogits over ragged and realistic vocabularies (V = 1, 13,
// 1000, 32000, 50257, 262147; N = 1, 7, 300 and more), written out of place and in place, reruns, argument checks.
// Rows 0-3 of every case are special: the target holds almost all the mass; logits in +-80 (their exponentials
// overflow fp32 unless the max is subtracted); a spike at the last and at the first logit of the row (a kernel that
// drops the scalar tail or head of a misaligned row misses it).
//
// Tolerances (u = 2^-24, fp32 unit roundoff):
// - The kernel's fp32 sum of exponentials s has a relative error of at most sum_rel_bound(V) (derived below); in
//   lse = max + log(s) it becomes an absolute error of the same size. Add one rounding of each of the terms and the
//   result (2u each: logf is within 1 ulp, each add within half an ulp). The loss likewise, with (max - target logit)
//   as a term.
// - dlogits (bf16): 1 bf16 ulp of the reference (see expect_bf16_near) + |dloss| x [p (lse error + u |x - lse| + 12 u)
//   + 4 u at the target] + |dloss| 2^-126: the lse error and the rounding of x - lse are relative errors of
//   p = exp(x - lse); expf's 2 ulp, the scaling by dloss and the CPU op's own fp32 exp, reciprocal and products stay
//   below 12 u of p; subtracting dloss at the target rounds at the scale of |dloss| on both sides; results below fp32's
//   normal range may be flushed.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cross_entropy.h"
#include "kernels/cuda/cross_entropy.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kF32 = 0x1p-24;

// Relative error bound of the kernel's fp32 sum of exponentials (cross_entropy.cu: 512 threads, 8 logits a vector).
// Along one thread's chain each vector costs at most 8 expf at 2 ulp (4u, relative to their own terms), 7 adds, and
// the rescale of the running sum (expf 4u, a product, an add): <= 20u a vector. The scalar head and tail add at most
// 14 elements at 6u; the 9 merge levels across the block (5 in a warp, 4 across warps) 6u each; logf 2u. All terms
// are positive, so these relative bounds add up: (20 vectors + 84 + 54 + 2)u < (20 vectors + 160)u.
double sum_rel_bound(int V) {
  const double vectors_per_thread = std::ceil(V / (8.0 * 512.0));
  return (20.0 * vectors_per_thread + 160.0) * kF32;
}

struct CeCase {
  int64_t N;
  int V;
};

void PrintTo(const CeCase& c, std::ostream* os) { *os << "N=" << c.N << " V=" << c.V; }

std::string case_name(const testing::TestParamInfo<CeCase>& info) {
  return "N" + std::to_string(info.param.N) + "_V" + std::to_string(info.param.V);
}

struct CeInputs {
  int64_t N;
  int V;
  std::vector<float> logits;  // (N, V), bf16 values
  std::vector<int32_t> targets;

  CeInputs(int64_t rows, int vocab) : N(rows), V(vocab) {
    const size_t n = static_cast<size_t>(N) * V;
    logits = random_bf16_values(n, 11, -4.0f, 4.0f);
    std::mt19937 gen(12);
    std::uniform_int_distribution<int32_t> pick(0, V - 1);
    targets.resize(N);
    for (int32_t& t : targets) t = pick(gen);
    float* row = logits.data();
    // Row 0: the target's logit 12 + ln V above the others' mean leaves the rest ~4e-5 of the mass.
    row[targets[0]] = round_bf16(12.0f + std::log(static_cast<float>(V)));
    if (N > 1) {
      const std::vector<float> large = random_bf16_values(V, 13, -80.0f, 80.0f);
      std::copy(large.begin(), large.end(), logits.begin() + V);
    }
    if (N > 2) logits[2 * static_cast<size_t>(V) + V - 1] = 30.0f;
    if (N > 3) logits[3 * static_cast<size_t>(V)] = 30.0f;
  }
};

// The reference lse of each row in double: max + log(sum exp(x - max)).
std::vector<double> reference_lse(const CeInputs& in) {
  std::vector<double> lse(in.N);
  for (int64_t n = 0; n < in.N; ++n) {
    const float* x = in.logits.data() + n * in.V;
    const double mx = *std::max_element(x, x + in.V);
    double sum = 0.0;
    for (int i = 0; i < in.V; ++i) sum += std::exp(x[i] - mx);
    lse[n] = mx + std::log(sum);
  }
  return lse;
}

struct RowTolerances {
  std::vector<double> lse, loss;
};

RowTolerances row_tolerances(const CeInputs& in, const std::vector<double>& lse_ref) {
  RowTolerances tol{std::vector<double>(in.N), std::vector<double>(in.N)};
  const double sum_err = sum_rel_bound(in.V);
  for (int64_t n = 0; n < in.N; ++n) {
    const float* x = in.logits.data() + n * in.V;
    const double mx = *std::max_element(x, x + in.V);
    const double log_sum = lse_ref[n] - mx;
    const double loss = lse_ref[n] - x[in.targets[n]];
    tol.lse[n] = sum_err + 2 * kF32 * (std::fabs(log_sum) + std::fabs(lse_ref[n]));
    tol.loss[n] = sum_err + 2 * kF32 * (std::fabs(mx - x[in.targets[n]]) + std::fabs(log_sum) + std::fabs(loss));
  }
  return tol;
}

struct GpuForward {
  std::vector<float> losses, lse;
};

GpuForward run_forward(const DeviceBf16& logits, const DeviceBuffer<int32_t>& targets, int64_t N, int V) {
  DeviceBuffer<float> losses(N), lse(N);
  cuda::cross_entropy_forward(losses.get(), lse.get(), logits.get(), targets.get(), N, V, nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  return {losses.download(), lse.download()};
}

class CudaCrossEntropy : public CudaTest, public testing::WithParamInterface<CeCase> {};

TEST_P(CudaCrossEntropy, MatchesCpuOp) {
  const CeInputs in(GetParam().N, GetParam().V);
  const int64_t N = in.N;
  const int V = in.V;
  const size_t n = in.logits.size();
  const float dloss = 1.0f / (3.0f * static_cast<float>(N));

  std::vector<float> losses_ref(N), dlogits_ref(n);
  cpu::cross_entropy_forward(losses_ref.data(), in.logits.data(), in.targets.data(), N, V);
  cpu::cross_entropy_backward(dlogits_ref.data(), in.logits.data(), in.targets.data(), dloss, N, V);
  const std::vector<double> lse_ref = reference_lse(in);
  const RowTolerances tol = row_tolerances(in, lse_ref);

  DeviceBf16 logits(in.logits);
  DeviceBuffer<int32_t> targets(in.targets);
  const GpuForward fwd = run_forward(logits, targets, N, V);
  expect_each_near(fwd.losses, losses_ref, tol.loss, "losses");
  std::vector<float> lse_ref_f(lse_ref.begin(), lse_ref.end());
  expect_each_near(fwd.lse, lse_ref_f, tol.lse, "lse");

  // Backward from the kernel's own lse, as in training, into a buffer of NaNs (an element left unwritten fails).
  DeviceBuffer<float> lse(fwd.lse);
  DeviceBuffer<uint16_t> dlogits_bits(std::vector<uint16_t>(n, 0x7fc0));
  auto* dlogits = reinterpret_cast<__nv_bfloat16*>(dlogits_bits.get());
  cuda::cross_entropy_backward(dlogits, logits.get(), lse.get(), targets.get(), dloss, N, V, nullptr, 0, V);
  // In place: the logits buffer overwritten with its gradient.
  cuda::cross_entropy_backward(logits.get(), logits.get(), lse.get(), targets.get(), dloss, N, V, nullptr, 0, V);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

  const std::vector<uint16_t> out_bits = dlogits_bits.download();
  std::vector<float> got(n);
  for (size_t i = 0; i < n; ++i) got[i] = bf16_value(out_bits[i]);
  std::vector<double> slack(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t row = static_cast<int64_t>(i / V);
    const bool is_target = static_cast<int>(i % V) == in.targets[row];
    const double x_minus_lse = in.logits[i] - lse_ref[row];
    const double p = std::exp(x_minus_lse);
    slack[i] = std::fabs(dloss) * (p * (tol.lse[row] + kF32 * std::fabs(x_minus_lse) + 12 * kF32) +
                                   (is_target ? 4 * kF32 : 0.0) + 0x1p-126);
  }
  expect_bf16_near(got, dlogits_ref, slack, "dlogits");
  EXPECT_TRUE(logits.download_bits() == out_bits) << "in-place dlogits differ from the out-of-place ones";
}

std::vector<CeCase> ce_cases() {
  std::vector<CeCase> cases;
  for (int64_t N : {1, 7, 300}) {
    for (int V : {13, 1000, 32000, 50257}) cases.push_back({N, V});
  }
  // V = 1 (every loss and gradient is 0); the largest vocabularies, ragged; a realistic micro-batch of GPT-2 logits.
  for (CeCase c : {CeCase{7, 1}, CeCase{5, 9}, CeCase{16, 262147}, CeCase{512, 50257}}) cases.push_back(c);
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaCrossEntropy, testing::ValuesIn(ce_cases()), case_name);

using CudaCrossEntropyCases = CudaTest;

// Tensor parallelism splits each row's columns over P ranks: the partial forward on every part, the combine of the
// gathered lse parts, and the backward of every part from the combined lse reproduce the whole rows. Tolerances: each
// part's lse carries the single-kernel bound for its width; the combine adds an expf per part (2 ulp), P - 1 adds, a
// logf and a final add (2u each, relative to their terms); the loss is then lse - target logit, one more rounding at
// |loss|. The backward of a part computes each element but the target exactly as the whole-row kernel does from the
// same lse, so those are compared bit for bit (which checks that each part finds its target column, and only its
// own). At the target the whole rows sum the other probabilities while a part takes dloss * expm1(x - lse): the two
// agree within twice the lse's error times dloss (plus a bf16 ulp of each).
TEST_F(CudaCrossEntropyCases, VocabularyPartsReproduceTheWholeRows) {
  for (const CeCase c : {CeCase{7, 1000}, CeCase{300, 50257}, CeCase{16, 9}}) {
    const CeInputs in(c.N, c.V);
    const int64_t N = in.N;
    const std::vector<double> lse_ref = reference_lse(in);
    for (int P : {2, 3}) {
      SCOPED_TRACE("N " + std::to_string(N) + " V " + std::to_string(in.V) + " parts " + std::to_string(P));
      const int width = (in.V + P - 1) / P;  // the last part is narrower when P does not divide V
      DeviceBuffer<int32_t> targets(in.targets);
      DeviceBuffer<float> lse_parts(static_cast<size_t>(P) * N), target_logit_part(N);
      std::vector<float> target_logit(N, 0.0f);
      std::vector<std::unique_ptr<DeviceBf16>> parts;
      for (int p = 0; p < P; ++p) {
        const int begin = p * width, cols = std::min(in.V, begin + width) - begin;
        std::vector<float> part(static_cast<size_t>(N) * cols);
        for (int64_t n = 0; n < N; ++n)
          std::copy_n(in.logits.begin() + n * in.V + begin, cols, part.begin() + n * cols);
        parts.push_back(std::make_unique<DeviceBf16>(part));
        cuda::cross_entropy_partial_forward(lse_parts.get() + p * N, target_logit_part.get(), parts.back()->get(),
                                            targets.get(), begin, N, cols, nullptr);
        DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
        const std::vector<float> t = target_logit_part.download();
        for (int64_t n = 0; n < N; ++n) target_logit[n] += t[n];  // what the tp all-reduce sums
      }
      DeviceBuffer<float> target_sum(target_logit), losses(N), lse(N);
      cuda::cross_entropy_combine(losses.get(), lse.get(), lse_parts.get(), target_sum.get(), N, P, nullptr);
      DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got_lse = lse.download(), got_loss = losses.download();
      for (int64_t n = 0; n < N; ++n) {
        const double x_target = in.logits[n * in.V + in.targets[n]];
        EXPECT_EQ(target_logit[n], static_cast<float>(x_target)) << "row " << n;
        const double tol_lse = sum_rel_bound(width) + (4.0 * P + 4.0) * kF32 * (std::fabs(lse_ref[n]) + 1.0);
        EXPECT_NEAR(got_lse[n], lse_ref[n], tol_lse) << "row " << n;
        const double loss_ref = lse_ref[n] - x_target;
        EXPECT_NEAR(got_loss[n], loss_ref, tol_lse + 2 * kF32 * std::fabs(loss_ref)) << "row " << n;
      }

      const float dloss = 1.0f / static_cast<float>(N);
      DeviceBf16 whole(in.logits);
      cuda::cross_entropy_backward(whole.get(), whole.get(), lse.get(), targets.get(), dloss, N, in.V, nullptr, 0,
                                   in.V);
      for (int p = 0; p < P; ++p) {
        const int begin = p * width, cols = std::min(in.V, begin + width) - begin;
        cuda::cross_entropy_backward(parts[p]->get(), parts[p]->get(), lse.get(), targets.get(), dloss, N, cols,
                                     nullptr, begin, in.V);
      }
      DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<uint16_t> want = whole.download_bits();
      for (int p = 0; p < P; ++p) {
        const int begin = p * width, cols = std::min(in.V, begin + width) - begin;
        const std::vector<uint16_t> got = parts[p]->download_bits();
        int mismatches = 0;
        for (int64_t n = 0; n < N; ++n) {
          for (int j = 0; j < cols; ++j) {
            const uint16_t g = got[n * cols + j], w = want[n * in.V + begin + j];
            if (begin + j != in.targets[n]) {
              mismatches += g != w;
              continue;
            }
            // Both forms are off by at most dloss x the lse's error (tol_lse, as above) and the whole rows' sum
            // by 80u more (64 terms per thread, 9 reduction levels, expf); then each is rounded to bf16.
            const double tol_lse = sum_rel_bound(width) + (4.0 * P + 4.0) * kF32 * (std::fabs(lse_ref[n]) + 1.0);
            const double tol = dloss * (2 * tol_lse + 80 * kF32) + bf16_ulp(bf16_value(w)) + bf16_ulp(bf16_value(g));
            EXPECT_NEAR(bf16_value(g), bf16_value(w), tol) << "row " << n << " target, part " << p;
          }
        }
        EXPECT_EQ(mismatches, 0) << "part " << p << ": dlogits differ from the whole rows'";
      }
    }
  }
}

// A vocabulary padded with columns masked to -inf, in whole 16-byte vectors (V 64: columns 40..63) and in a ragged
// row (V 67, the mask also in the scalar tail): the losses and lse of the unpadded rows, and gradients 0 in the mask.
// Before the fix a vector of eight -inf logits summed exp(-inf - -inf) = NaN into its row.
TEST_F(CudaCrossEntropyCases, ColumnsMaskedToMinusInfinityGiveTheUnpaddedResults) {
  const int kReal = 40;
  const CeInputs real(5, kReal);
  for (int V : {64, 67}) {
    SCOPED_TRACE("V " + std::to_string(V));
    const int64_t N = real.N;
    std::vector<float> padded(static_cast<size_t>(N) * V, -INFINITY);
    for (int64_t n = 0; n < N; ++n) std::copy_n(real.logits.begin() + n * kReal, kReal, padded.begin() + n * V);
    DeviceBf16 logits(padded);
    DeviceBuffer<int32_t> targets(real.targets);
    const GpuForward fwd = run_forward(logits, targets, N, V);
    const std::vector<double> lse_ref = reference_lse(real);
    const RowTolerances tol = row_tolerances(real, lse_ref);
    for (int64_t n = 0; n < N; ++n) {
      ASSERT_TRUE(std::isfinite(fwd.lse[n]) && std::isfinite(fwd.losses[n])) << "row " << n;
      EXPECT_NEAR(fwd.lse[n], lse_ref[n], tol.lse[n] + sum_rel_bound(V)) << "row " << n;
      EXPECT_NEAR(fwd.losses[n], lse_ref[n] - real.logits[n * kReal + real.targets[n]],
                  tol.loss[n] + sum_rel_bound(V)) << "row " << n;
    }
    DeviceBuffer<float> lse(fwd.lse);
    cuda::cross_entropy_backward(logits.get(), logits.get(), lse.get(), targets.get(), 1.0f, N, V, nullptr, 0, V);
    DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<uint16_t> bits = logits.download_bits();
    for (int64_t n = 0; n < N; ++n) {
      double row_sum = 0.0;
      for (int i = 0; i < V; ++i) {
        const float d = bf16_value(bits[n * V + i]);
        ASSERT_TRUE(std::isfinite(d)) << "row " << n << " column " << i;
        if (i >= kReal) {
          EXPECT_EQ(d, 0.0f) << "row " << n << " masked column " << i;
        }
        row_sum += d;
      }
      EXPECT_NEAR(row_sum, 0.0, kReal * 0x1p-8) << "row " << n;  // softmax - onehot sums to 0 (bf16 roundings)
    }
  }
}

// Every column at 0 but the target at L over V = 32000 (1 - p from 7e-2 down to 1.2e-6): the bf16 gradient at the
// target is its double value rounded, within one bf16 ulp. The form before, dloss * p - dloss from the fp32 lse, was
// off by ulp(lse) / (1 - p): 0.5-2% at 1 - p ~ 1e-4 and more beyond (tests/kernels/cuda/cross_entropy_math_test.cpp
// checks the same math on the host).
TEST_F(CudaCrossEntropyCases, TheTargetGradientOfAConfidentPredictionKeepsItsRelativeAccuracy) {
  const int V = 32000;
  const std::vector<float> L = {13.0f, 17.0f, 20.0f, 24.0f};
  const int64_t N = static_cast<int64_t>(L.size());
  std::vector<float> x(static_cast<size_t>(N) * V, 0.0f);
  std::vector<int32_t> target(N);
  for (int64_t n = 0; n < N; ++n) {
    target[n] = static_cast<int32_t>(1234 + 97 * n);
    x[n * V + target[n]] = L[n];
  }
  DeviceBf16 logits(x);
  DeviceBuffer<int32_t> targets(target);
  const GpuForward fwd = run_forward(logits, targets, N, V);
  DeviceBuffer<float> lse(fwd.lse);
  const float dloss = 1.0f / 4096.0f;
  cuda::cross_entropy_backward(logits.get(), logits.get(), lse.get(), targets.get(), dloss, N, V, nullptr, 0, V);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<uint16_t> bits = logits.download_bits();
  for (int64_t n = 0; n < N; ++n) {
    const double e = (V - 1) * std::exp(-double(L[n]));
    const double want = -double(dloss) * e / (1.0 + e);
    const double got = bf16_value(bits[n * V + target[n]]);
    EXPECT_NEAR(got, want, bf16_ulp(want) + 2e-5 * std::fabs(want)) << "L " << L[n];
  }
}

TEST_F(CudaCrossEntropyCases, ForwardRerunsAreBitIdentical) {
  const CeInputs in(300, 50257);
  DeviceBf16 logits(in.logits);
  DeviceBuffer<int32_t> targets(in.targets);
  const GpuForward a = run_forward(logits, targets, in.N, in.V);
  const GpuForward b = run_forward(logits, targets, in.N, in.V);
  EXPECT_TRUE(a.losses == b.losses) << "losses differ between runs";
  EXPECT_TRUE(a.lse == b.lse) << "lse differs between runs";
}

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
TEST(CudaCrossEntropyArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced: 256 is 16-byte aligned, 258 two bytes past it, 257 odd.
  auto* act = reinterpret_cast<__nv_bfloat16*>(uintptr_t{256});
  auto* off = reinterpret_cast<__nv_bfloat16*>(uintptr_t{258});
  auto* odd = reinterpret_cast<__nv_bfloat16*>(uintptr_t{257});
  auto* f32 = reinterpret_cast<float*>(uintptr_t{256});
  auto* ids = reinterpret_cast<int32_t*>(uintptr_t{256});
  EXPECT_THROW(cuda::cross_entropy_forward(f32, f32, act, ids, -1, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_forward(f32, f32, act, ids, 4, 0, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_forward(f32, nullptr, act, ids, 4, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_forward(f32, f32, act, nullptr, 4, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_forward(f32, f32, odd, ids, 4, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_backward(act, act, nullptr, ids, 1.0f, 4, 8, nullptr), std::invalid_argument);
  EXPECT_NO_THROW(cuda::cross_entropy_forward(f32, f32, off, ids, 0, 13, nullptr));  // N = 0: nothing to do
  EXPECT_NO_THROW(cuda::cross_entropy_backward(off, off, f32, ids, 1.0f, 0, 13, nullptr));
  // Columns that do not fit the vocabulary they claim to be part of.
  EXPECT_THROW(cuda::cross_entropy_backward(act, act, f32, ids, 1.0f, 4, 8, nullptr, 4, 10), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_backward(act, act, f32, ids, 1.0f, 4, 8, nullptr, -1, 0), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_partial_forward(f32, f32, act, ids, -1, 4, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_partial_forward(f32, nullptr, act, ids, 0, 4, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_combine(f32, f32, f32, f32, 4, 0, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::cross_entropy_combine(f32, f32, nullptr, f32, 4, 2, nullptr), std::invalid_argument);
  try {
    cuda::cross_entropy_backward(off, act, f32, ids, 1.0f, 4, 13, nullptr);  // offsets 2 and 0 from 16 bytes
    ADD_FAILURE() << "dlogits and logits at different offsets from a 16-byte boundary accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cross_entropy_backward"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain::test
