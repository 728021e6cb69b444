// The CUDA RoPE kernels against the CPU op (kernels/cpu/rope.h) on the same bf16 inputs and the same angle tables
// (cpu::rope_tables): the rotation of a column slice of wider rows, in place, leaving every other column bit for bit;
// the backward against the CPU op's (which accumulates onto zeros here); and the backward as the exact transpose of
// the forward, pair by pair. Shapes reach the 16-byte path (D % 16 == 0, ld % 8 == 0, aligned slice: q and k slices of
// fused qkv rows, one realistic) and the scalar path (D = 2, 6, 24, odd ld, a slice starting 8 bytes off alignment).
//
// Tolerances:
// - forward, backward (bf16): 1 ulp of the reference + 1e-6 (|x_i c| + |x_j s|), j the partner of i: each side computes
//   a two-term sum of products in fp32 (the kernel may fuse one product into an fma), a few roundings of those terms.
// - transpose: dot(R x, y) = dot(x, R^T y) holds exactly in real arithmetic for each pair (i, i + D/2), with any c and
//   s. The kernels' outputs are rounded to bf16, each by at most 2^-8 of its value (half an ulp, 8 significant bits),
//   so per pair |dot(bf16(R x), y) - dot(x, bf16(R^T y))| <= 2^-8 (1 + 2^-7) (sum |(R x)_k y_k| + sum |x_k (R^T y)_k|),
//   the factor covering |v| <= |bf16(v)| (1 + 2^-7), plus the fp32 slack above; the dots are summed in double. A
//   backward that rotated the wrong way would miss by 2 |s| |x_i y_j - x_j y_i|, far outside this wherever sin != 0.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/rope.h"
#include "kernels/cuda/rope.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kTheta = 10000.0;

struct RopeCase {
  int B, T, H, D;
  int64_t ld;   // row stride of the buffer
  int64_t col;  // first column of the slice in each row; col + H * D <= ld
};

void PrintTo(const RopeCase& c, std::ostream* os) {
  *os << "B=" << c.B << " T=" << c.T << " H=" << c.H << " D=" << c.D << " ld=" << c.ld << " col=" << c.col;
}

std::string case_name(const testing::TestParamInfo<RopeCase>& info) {
  const RopeCase& c = info.param;
  return "B" + std::to_string(c.B) + "_T" + std::to_string(c.T) + "_H" + std::to_string(c.H) + "_D" +
         std::to_string(c.D) + "_ld" + std::to_string(c.ld) + "_col" + std::to_string(c.col);
}

struct Tables {
  std::vector<float> cos, sin;
  Tables(int T, int D) : cos(static_cast<size_t>(T) * D / 2), sin(cos.size()) {
    cpu::rope_tables(cos.data(), sin.data(), T, D, kTheta);
  }
};

size_t rows_of(const RopeCase& c) { return static_cast<size_t>(c.B) * c.T; }
size_t slice_size(const RopeCase& c) { return rows_of(c) * c.H * c.D; }

// The contiguous (B, T, H, D) slice of a (B * T, ld) buffer.
std::vector<float> extract(const RopeCase& c, const std::vector<float>& buffer) {
  std::vector<float> s(slice_size(c));
  const size_t width = static_cast<size_t>(c.H) * c.D;
  for (size_t r = 0; r < rows_of(c); ++r) {
    for (size_t k = 0; k < width; ++k) s[r * width + k] = buffer[r * c.ld + c.col + k];
  }
  return s;
}

// Runs rope_forward (or rope_backward) on the slice of a device copy of buffer and returns the whole buffer.
std::vector<float> run_rope(const RopeCase& c, const Tables& tables, const std::vector<float>& buffer, bool backward) {
  DeviceBf16 x(buffer);
  DeviceBuffer<float> cos_dev(tables.cos), sin_dev(tables.sin);
  __nv_bfloat16* slice = x.get() + c.col;
  if (backward) {
    cuda::rope_backward(slice, cos_dev.get(), sin_dev.get(), c.B, c.T, c.H, c.D, c.ld, nullptr);
  } else {
    cuda::rope_forward(slice, cos_dev.get(), sin_dev.get(), c.B, c.T, c.H, c.D, c.ld, nullptr);
  }
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  return x.download();
}

// Per element of a contiguous slice: |x_i c| + |x_j s|, j the partner of i, (c, s) the angle of the pair.
std::vector<double> term_magnitudes(const RopeCase& c, const Tables& tables, const std::vector<float>& x) {
  std::vector<double> m(x.size());
  const int half = c.D / 2;
  for (size_t head = 0; head < x.size() / c.D; ++head) {
    const size_t t = head / c.H % c.T;
    for (int i = 0; i < c.D; ++i) {
      const int k = i % half;
      const int partner = i < half ? i + half : i - half;
      const double cs = tables.cos[t * half + k], sn = tables.sin[t * half + k];
      m[head * c.D + i] = std::fabs(x[head * c.D + i] * cs) + std::fabs(x[head * c.D + partner] * sn);
    }
  }
  return m;
}

class CudaRope : public CudaTest, public testing::WithParamInterface<RopeCase> {};

TEST_P(CudaRope, InPlaceSliceMatchesCpuOp) {
  const RopeCase c = GetParam();
  const Tables tables(c.T, c.D);
  const std::vector<float> buffer = random_bf16_values(rows_of(c) * c.ld, 1, -2.0f, 2.0f);
  const std::vector<float> x = extract(c, buffer);
  std::vector<double> slack = term_magnitudes(c, tables, x);
  for (double& s : slack) s *= 1e-6;

  for (bool backward : {false, true}) {
    SCOPED_TRACE(backward ? "rope_backward" : "rope_forward");
    std::vector<float> want(x.size(), 0.0f);
    if (backward) {
      cpu::rope_backward(want.data(), x.data(), tables.cos.data(), tables.sin.data(), c.B, c.T, c.H, c.D);
    } else {
      cpu::rope_forward(want.data(), x.data(), tables.cos.data(), tables.sin.data(), c.B, c.T, c.H, c.D);
    }
    const std::vector<float> got = run_rope(c, tables, buffer, backward);
    expect_bf16_near(extract(c, got), want, slack, backward ? "dx" : "x");
    size_t changed_outside = 0;
    const int64_t width = static_cast<int64_t>(c.H) * c.D;
    for (size_t i = 0; i < got.size(); ++i) {
      const int64_t k = static_cast<int64_t>(i % c.ld);
      if (k < c.col || k >= c.col + width) changed_outside += got[i] != buffer[i];
    }
    EXPECT_EQ(changed_outside, 0u) << "columns outside the slice were written";
  }
}

TEST_P(CudaRope, BackwardIsTheTransposeOfForward) {
  const RopeCase c = GetParam();
  const Tables tables(c.T, c.D);
  const std::vector<float> x_buf = random_bf16_values(rows_of(c) * c.ld, 2, -2.0f, 2.0f);
  const std::vector<float> y_buf = random_bf16_values(rows_of(c) * c.ld, 3, -2.0f, 2.0f);
  const std::vector<float> x = extract(c, x_buf), y = extract(c, y_buf);
  const std::vector<float> rx = extract(c, run_rope(c, tables, x_buf, false));
  const std::vector<float> rty = extract(c, run_rope(c, tables, y_buf, true));

  const int half = c.D / 2;
  int failures = 0;
  for (size_t head = 0; head < x.size() / c.D && failures < 5; ++head) {
    for (int i = 0; i < half && failures < 5; ++i) {
      const size_t a = head * c.D + i, b = a + half;
      const double lhs = static_cast<double>(rx[a]) * y[a] + static_cast<double>(rx[b]) * y[b];
      const double rhs = static_cast<double>(x[a]) * rty[a] + static_cast<double>(x[b]) * rty[b];
      const double rounding =
          std::fabs(static_cast<double>(rx[a]) * y[a]) + std::fabs(static_cast<double>(rx[b]) * y[b]) +
          std::fabs(static_cast<double>(x[a]) * rty[a]) + std::fabs(static_cast<double>(x[b]) * rty[b]);
      const double fp32 = 1e-6 * (std::fabs(x[a]) + std::fabs(x[b])) * (std::fabs(y[a]) + std::fabs(y[b]));
      const double tol = 0x1p-8 * (1.0 + 0x1p-7) * rounding + fp32;
      if (!(std::fabs(lhs - rhs) <= tol)) {
        ADD_FAILURE() << "head " << head << " pair " << i << ": dot(R x, y) = " << lhs << ", dot(x, R^T y) = " << rhs
                      << ", |difference| " << std::fabs(lhs - rhs) << " > " << tol;
        ++failures;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaRope,
                         testing::Values(RopeCase{1, 1, 1, 2, 2, 0},             // smallest head
                                         RopeCase{2, 3, 5, 6, 31, 1},            // odd ld and column: scalar
                                         RopeCase{1, 5, 3, 24, 72, 0},           // D / 2 = 12: scalar
                                         RopeCase{3, 33, 2, 16, 40, 8},          // 16-byte path, ld > H * D
                                         RopeCase{2, 17, 4, 64, 768, 0},         // q slice of qkv rows
                                         RopeCase{2, 17, 4, 64, 768, 256},       // k slice of qkv rows
                                         RopeCase{2, 9, 4, 64, 768, 4},          // slice 8 bytes off: scalar
                                         RopeCase{2, 1024, 16, 128, 6144, 2048}  // realistic k slice
                                         ),
                         case_name);

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
TEST(CudaRopeArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced.
  auto* x = reinterpret_cast<__nv_bfloat16*>(uintptr_t{256});
  auto* table = reinterpret_cast<const float*>(uintptr_t{4096});
  EXPECT_THROW(cuda::rope_forward(x, table, table, 1, 4, 2, 7, 14, nullptr), std::invalid_argument);   // odd D
  EXPECT_THROW(cuda::rope_forward(x, table, table, 1, 4, 2, 0, 0, nullptr), std::invalid_argument);    // D = 0
  EXPECT_THROW(cuda::rope_forward(x, table, table, -1, 4, 2, 8, 16, nullptr), std::invalid_argument);  // B < 0
  EXPECT_THROW(cuda::rope_forward(x, nullptr, table, 1, 4, 2, 8, 16, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::rope_backward(nullptr, table, table, 1, 4, 2, 8, 16, nullptr), std::invalid_argument);
  try {
    cuda::rope_backward(x, table, table, 1, 4, 2, 8, 15, nullptr);  // ld < H * D
    ADD_FAILURE() << "ld < H * D accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("rope_backward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ld"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(cuda::rope_forward(x, table, table, 0, 4, 2, 8, 16, nullptr));  // B = 0: nothing to do
}

}  // namespace
}  // namespace dytrain::test
