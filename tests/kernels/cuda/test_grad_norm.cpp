// The CUDA sum of squares against a sequential double sum on the host, for n = 0, 1, 1000, ragged sizes, one past the
// grid's four-load stride and 10^7; exact known values (sums of equal squares that double represents exactly); reruns
// bit-identical; the workspace size a function of n alone; argument checks (these last run without a GPU).
//
// Tolerance: every square of an fp32 value is exact in double, and all terms are positive, so any summation order has
// a relative error of at most (terms added in sequence - 1) x 2^-53 of the sum. The host adds n terms in sequence, the
// kernel at most n per thread followed by fewer than 32 levels of block and partial sums: each is within (n + 32) x
// 2^-53 of the exact sum, so they differ by less than (2 n + 64) x 2^-53 of it, a bound that scales with n but is
// still 2e-9 relative at 10^7.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/grad_norm.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kF64 = 0x1p-53;

// Gradients spanning magnitudes 2^-20 .. 2^20, both signs: squares over 80 binades, so a lost or fp32-rounded term
// would show.
std::vector<float> gradient_like(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<float> x(n);
  for (float& v : x) v = std::ldexp(mantissa(gen), exponent(gen));
  return x;
}

double gpu_sum_squares(const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  DeviceBuffer<float> x_dev(x);
  DeviceBuffer<double> out(std::vector<double>{123.0});  // overwritten, not accumulated into
  DeviceBuffer<unsigned char> workspace(cuda::sum_squares_workspace_bytes(n));
  cuda::sum_squares(out.get(), x_dev.get(), n, workspace.get(), workspace.size(), nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  return out.download()[0];
}

class CudaSumSquares : public CudaTest, public testing::WithParamInterface<int64_t> {};

TEST_P(CudaSumSquares, MatchesHostDoubleSum) {
  const int64_t n = GetParam();
  const std::vector<float> x = gradient_like(n, 31);
  double ref = 0.0;
  for (float v : x) ref += static_cast<double>(v) * v;
  EXPECT_NEAR(gpu_sum_squares(x), ref, (2.0 * static_cast<double>(n) + 64.0) * kF64 * ref) << "n = " << n;
}

// 1024 x 256 x 4 + 1: one element past four full grid strides; 10^7: many iterations per thread.
INSTANTIATE_TEST_SUITE_P(Sizes, CudaSumSquares,
                         testing::Values(int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{1001}, int64_t{4099},
                                         int64_t{1024 * 256 * 4 + 1}, int64_t{10'000'000}),
                         [](const testing::TestParamInfo<int64_t>& info) { return "n" + std::to_string(info.param); });

using CudaSumSquaresCases = CudaTest;

TEST_F(CudaSumSquaresCases, ExactKnownValues) {
  EXPECT_EQ(gpu_sum_squares({3.0f}), 9.0);
  // Integer partial sums below 2^53 are exact in any order.
  EXPECT_EQ(gpu_sum_squares(std::vector<float>(10'000'000, 1.0f)), 1e7);
  EXPECT_EQ(gpu_sum_squares(std::vector<float>(1'000'003, -3.0f)), 9.0 * 1'000'003);
  EXPECT_EQ(gpu_sum_squares(std::vector<float>(4097, 0.5f)), 4097 * 0.25);
}

TEST_F(CudaSumSquaresCases, RerunsAreBitIdentical) {
  const std::vector<float> x = gradient_like(10'000'019, 32);
  const double a = gpu_sum_squares(x);
  const double b = gpu_sum_squares(x);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof(double)), 0) << a << " vs " << b;
}

// These run with or without a GPU: the grid, hence the workspace, depends on n alone (no device query), and the entry
// point checks its arguments before any CUDA call.
TEST(CudaSumSquaresHost, WorkspaceDependsOnNAlone) {
  EXPECT_EQ(cuda::sum_squares_workspace_bytes(0), 0u);
  EXPECT_EQ(cuda::sum_squares_workspace_bytes(1), sizeof(double));  // one block, one partial
  size_t previous = 0;
  for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{1} << 20, int64_t{1} << 30, int64_t{1} << 40}) {
    const size_t bytes = cuda::sum_squares_workspace_bytes(n);
    EXPECT_GE(bytes, previous) << "n = " << n;
    EXPECT_LE(bytes, 8192u) << "n = " << n;
    previous = bytes;
  }
  // The grid stops growing: the last 2^10 times more elements take no more partials.
  EXPECT_EQ(cuda::sum_squares_workspace_bytes(int64_t{1} << 30), cuda::sum_squares_workspace_bytes(int64_t{1} << 40));
  EXPECT_THROW(cuda::sum_squares_workspace_bytes(-1), std::invalid_argument);
}

TEST(CudaSumSquaresHost, ArgumentsAreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced (every call below must throw).
  auto* out = reinterpret_cast<double*>(uintptr_t{256});
  auto* x = reinterpret_cast<const float*>(uintptr_t{256});
  void* ws = reinterpret_cast<void*>(uintptr_t{512});
  const size_t bytes = cuda::sum_squares_workspace_bytes(5000);
  EXPECT_THROW(cuda::sum_squares(out, x, -1, ws, bytes, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::sum_squares(nullptr, x, 5000, ws, bytes, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::sum_squares(out, nullptr, 5000, ws, bytes, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::sum_squares(out, x, 5000, ws, bytes - 1, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::sum_squares(out, x, 5000, nullptr, bytes, nullptr), std::invalid_argument);
  try {
    cuda::sum_squares(out, x, 5000, reinterpret_cast<void*>(uintptr_t{520}), bytes, nullptr);  // 8 past 16 bytes
    ADD_FAILURE() << "a misaligned workspace accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sum_squares_workspace_bytes"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain::test
