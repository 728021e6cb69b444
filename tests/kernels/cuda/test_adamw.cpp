// The CUDA AdamW update against kernels/cpu/adamw.h run segment by segment: several segments with different lr,
// beta2 and weight decay (a one-element segment like a DyT alpha, a short ragged one, long ones), at t = 1 from zero
// moments and at t = 1000 from random ones, with grad_scale < 1 (clipping); the bf16 copy equal to the rounded new
// master weights, and nothing else changed when it is not asked for; sizes from 1 to beyond the grid (elements strided
// over). The segment validation and the argument checks run on CPU, without a GPU.
//
// Tolerance: the kernel evaluates the CPU op's expression operation by operation with IEEE round-to-nearest and the
// same bias corrections, so with the default host flags (no FMA contraction) the results are bit-identical. The bound
// leaves room for a CPU build that contracts a * b + c into an FMA (-march=native): one rounding of difference per
// operation, propagated: m and v 4u of their two terms, the update ~10 roundings (m and v's, two divisions, the sqrt,
// the add of eps), so param 2u of |param| + lr (16u |update| + 4u |wd param|).
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/adamw.h"
#include "kernels/cuda/adamw.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

using cuda::AdamWSegment;

constexpr double kF32 = 0x1p-24;
constexpr float kBeta1 = 0.9f;
constexpr float kEps = 1e-8f;
constexpr float kGradScale = 0.625f;

// Four groups' settings far enough apart (lr over three decades) that an element updated with its neighbour's
// settings fails by orders of magnitude more than the tolerance. Needs n >= 16.
std::vector<AdamWSegment> test_segments(int64_t n) {
  const int64_t a = n / 2;
  return {
      {0, 1, 0.02f, 0.95f, 0.0f},       // one scalar, no decay (a DyT alpha)
      {1, a, 3e-4f, 0.95f, 0.1f},       // matrices
      {a, a + 7, 0.05f, 0.999f, 0.0f},  // a short ragged run (a DyT gamma)
      {a + 7, n, 1e-3f, 0.99f, 0.05f},  // the rest, another beta2
  };
}

struct State {
  std::vector<float> param, m, v, grad;
};

State initial_state(int64_t n, int64_t t) {
  State s;
  s.param = random_floats(n, 21, -1.0f, 1.0f);
  s.grad = random_floats(n, 22, -2.0f, 2.0f);
  if (t == 1) {  // the first step starts from zero moments
    s.m.assign(n, 0.0f);
    s.v.assign(n, 0.0f);
  } else {
    s.m = random_floats(n, 23, -0.1f, 0.1f);
    s.v = random_floats(n, 24, 0.0f, 0.01f);
  }
  return s;
}

State cpu_reference(const State& before, const std::vector<AdamWSegment>& segments, int64_t t) {
  State s = before;
  for (const AdamWSegment& seg : segments) {
    cpu::AdamWStep step;
    step.lr = seg.lr;
    step.beta1 = kBeta1;
    step.beta2 = seg.beta2;
    step.eps = kEps;
    step.weight_decay = seg.weight_decay;
    step.grad_scale = kGradScale;
    step.t = t;
    const int64_t b = seg.begin;
    cpu::adamw_update(s.param.data() + b, s.m.data() + b, s.v.data() + b, s.grad.data() + b, seg.end - b, step);
  }
  return s;
}

struct GpuResult {
  State state;
  std::vector<uint16_t> param_bf16;  // empty without the copy
};

GpuResult run_gpu(const State& before, const std::vector<AdamWSegment>& segments, int64_t t, bool with_bf16) {
  const int64_t n = static_cast<int64_t>(before.param.size());
  DeviceBuffer<float> param(before.param), m(before.m), v(before.v), grad(before.grad);
  DeviceBuffer<uint16_t> copy(std::vector<uint16_t>(n, 0x7fc0));  // NaN: an element left unwritten fails
  DeviceBuffer<unsigned char> workspace(cuda::adamw_workspace_bytes(segments.size()));
  auto* copy_ptr = with_bf16 ? reinterpret_cast<__nv_bfloat16*>(copy.get()) : nullptr;
  cuda::adamw_update(param.get(), copy_ptr, m.get(), v.get(), grad.get(), n, segments, kBeta1, kEps, kGradScale, t,
                     workspace.get(), workspace.size(), nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  GpuResult r{{param.download(), m.download(), v.download(), grad.download()}, {}};
  if (with_bf16) r.param_bf16 = copy.download();
  return r;
}

void expect_matches_cpu(const State& got, const State& before, const State& ref,
                        const std::vector<AdamWSegment>& segments, int64_t t) {
  const size_t n = before.param.size();
  std::vector<double> tol_m(n), tol_v(n), tol_p(n);
  const double bc1 = 1.0 - std::pow(static_cast<double>(kBeta1), static_cast<double>(t));
  for (const AdamWSegment& seg : segments) {
    const double bc2 = 1.0 - std::pow(static_cast<double>(seg.beta2), static_cast<double>(t));
    for (int64_t i = seg.begin; i < seg.end; ++i) {
      const double g = static_cast<double>(before.grad[i]) * kGradScale;
      tol_m[i] = 4 * kF32 * (kBeta1 * std::fabs(before.m[i]) + (1.0 - kBeta1) * std::fabs(g));
      tol_v[i] = 4 * kF32 * (seg.beta2 * before.v[i] + (1.0 - seg.beta2) * g * g);
      const double update = std::fabs(ref.m[i]) / bc1 / (std::sqrt(ref.v[i] / bc2) + kEps);
      tol_p[i] = 2 * kF32 * std::fabs(before.param[i]) +
                 seg.lr * (16 * kF32 * update + 4 * kF32 * seg.weight_decay * std::fabs(before.param[i]));
    }
  }
  expect_each_near(got.m, ref.m, tol_m, "m");
  expect_each_near(got.v, ref.v, tol_v, "v");
  expect_each_near(got.param, ref.param, tol_p, "param");
  EXPECT_TRUE(got.grad == before.grad) << "grad was modified";
}

struct AdamWCase {
  int64_t n;
  int64_t t;
};

void PrintTo(const AdamWCase& c, std::ostream* os) { *os << "n=" << c.n << " t=" << c.t; }

std::string case_name(const testing::TestParamInfo<AdamWCase>& info) {
  return "n" + std::to_string(info.param.n) + "_t" + std::to_string(info.param.t);
}

class CudaAdamW : public CudaTest, public testing::WithParamInterface<AdamWCase> {};

TEST_P(CudaAdamW, MatchesCpuOpPerSegment) {
  const int64_t n = GetParam().n;
  const int64_t t = GetParam().t;
  const std::vector<AdamWSegment> segments = test_segments(n);
  const State before = initial_state(n, t);
  const State ref = cpu_reference(before, segments, t);

  const GpuResult with_copy = run_gpu(before, segments, t, /*with_bf16=*/true);
  expect_matches_cpu(with_copy.state, before, ref, segments, t);
  size_t copy_mismatches = 0;
  for (int64_t i = 0; i < n; ++i) copy_mismatches += with_copy.param_bf16[i] != bf16_bits(with_copy.state.param[i]);
  EXPECT_EQ(copy_mismatches, 0u) << "param_bf16 differs from bf16(new param)";

  // Without the copy: the same master weights and moments, bit for bit.
  const GpuResult without_copy = run_gpu(before, segments, t, /*with_bf16=*/false);
  EXPECT_TRUE(without_copy.state.param == with_copy.state.param) << "param depends on whether a bf16 copy is written";
  EXPECT_TRUE(without_copy.state.m == with_copy.state.m);
  EXPECT_TRUE(without_copy.state.v == with_copy.state.v);
}

// n = 4M + 1000 exceeds the kernel's grid of 4M threads, so threads stride over several elements.
INSTANTIATE_TEST_SUITE_P(Sizes, CudaAdamW,
                         testing::Values(AdamWCase{16, 1}, AdamWCase{16, 1000}, AdamWCase{100003, 1},
                                         AdamWCase{100003, 1000}, AdamWCase{(int64_t{1} << 22) + 1000, 1000}),
                         case_name);

using CudaAdamWCases = CudaTest;

TEST_F(CudaAdamWCases, OneSegmentOneElement) {
  const std::vector<AdamWSegment> segments = {{0, 1, 0.01f, 0.95f, 0.1f}};
  const State before = initial_state(1, 7);
  const State ref = cpu_reference(before, segments, 7);
  expect_matches_cpu(run_gpu(before, segments, 7, true).state, before, ref, segments, 7);
}

// These run with or without a GPU: validation is host code and the entry point checks before any CUDA call.
TEST(CudaAdamWSegments, ValidListsPass) {
  EXPECT_NO_THROW(cuda::validate_adamw_segments(test_segments(100), 100));
  EXPECT_NO_THROW(cuda::validate_adamw_segments({{0, 5, 1e-3f, 0.95f, 0.0f}}, 5));
  EXPECT_NO_THROW(cuda::validate_adamw_segments({}, 0));
}

TEST(CudaAdamWSegments, BadListsNameTheSegment) {
  const AdamWSegment ok{0, 4, 1e-3f, 0.95f, 0.1f};
  auto with = [&](int64_t begin, int64_t end) {
    AdamWSegment s = ok;
    s.begin = begin;
    s.end = end;
    return s;
  };
  struct Bad {
    std::vector<AdamWSegment> segments;
    int64_t n;
    const char* expected;  // a piece of the message
  };
  AdamWSegment nan_lr = with(4, 10);
  nan_lr.lr = std::numeric_limits<float>::quiet_NaN();
  AdamWSegment beta2_one = with(4, 10);
  beta2_one.beta2 = 1.0f;
  const std::vector<Bad> cases = {
      {{}, 10, "no segments"},
      {{with(1, 10)}, 10, "segment 0 [1, 10) begins at 1"},      // does not start at 0
      {{ok, with(5, 10)}, 10, "segment 1 [5, 10) begins at 5"},  // gap
      {{ok, with(3, 10)}, 10, "segment 1 [3, 10) begins at 3"},  // overlap
      {{with(4, 10), ok}, 10, "segment 0 [4, 10)"},              // unsorted
      {{ok, with(4, 4), with(4, 10)}, 10, "segment 1 [4, 4) is empty"},
      {{ok, with(4, 12)}, 10, "segment 1 [4, 12) ends past n"},
      {{ok, with(4, 8)}, 10, "end at 8"},  // short of n
      {{ok, nan_lr}, 10, "segment 1 [4, 10) has lr nan"},
      {{ok, beta2_one}, 10, "beta2 1.0"},
      {{ok}, -1, "negative"},
  };
  for (const Bad& c : cases) {
    try {
      cuda::validate_adamw_segments(c.segments, c.n);
      ADD_FAILURE() << "accepted, expected an error containing '" << c.expected << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
    }
  }
}

TEST(CudaAdamWArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced (every call below must throw or have nothing to do).
  auto* f = reinterpret_cast<float*>(uintptr_t{256});
  void* ws = reinterpret_cast<void*>(uintptr_t{512});
  const std::vector<AdamWSegment> segments = test_segments(100);
  const size_t ws_bytes = cuda::adamw_workspace_bytes(segments.size());
  ASSERT_GT(ws_bytes, 0u);
  auto update = [&](float* param, int64_t n, const std::vector<AdamWSegment>& segs, float beta1, int64_t t,
                    void* workspace, size_t bytes) {
    cuda::adamw_update(param, nullptr, f, f, f, n, segs, beta1, kEps, kGradScale, t, workspace, bytes, nullptr);
  };
  EXPECT_THROW(update(nullptr, 100, segments, kBeta1, 1, ws, ws_bytes), std::invalid_argument);
  EXPECT_THROW(update(f, 100, segments, kBeta1, 0, ws, ws_bytes), std::invalid_argument);      // t is 1-based
  EXPECT_THROW(update(f, 100, segments, 1.0f, 1, ws, ws_bytes), std::invalid_argument);        // beta1 = 1
  EXPECT_THROW(update(f, 101, segments, kBeta1, 1, ws, ws_bytes), std::invalid_argument);      // segments end at 100
  EXPECT_THROW(update(f, 100, segments, kBeta1, 1, ws, ws_bytes - 1), std::invalid_argument);  // workspace short
  EXPECT_THROW(update(f, 100, segments, kBeta1, 1, nullptr, ws_bytes), std::invalid_argument);
  EXPECT_NO_THROW(update(f, 0, {}, kBeta1, 1, nullptr, 0));  // n = 0: nothing to do
}

}  // namespace
}  // namespace dytrain::test
