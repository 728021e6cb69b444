// sum_squares: against a double reference on sizes around the chunk boundary, and bit-identical with 1, 2 and 3
// OpenMP threads.
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/grad_norm.h"
#include "tests/kernels/cpu/op_test_util.h"

namespace dytrain::cpu {
namespace {

using test::random_vec;

TEST(CpuSumSquares, MatchesDoubleReference) {
  for (int64_t n : {0, 1, 7, 4095, 4096, 4097, 3 * 4096 + 17}) {
    const auto x = random_vec(static_cast<size_t>(n), 120 + static_cast<uint32_t>(n), -3.0f, 3.0f);
    double ref = 0.0;
    for (float v : x) ref += static_cast<double>(v) * v;
    // Squares of fp32 values are exact in double; only the summation order differs: ~n * 1e-16 relative.
    EXPECT_NEAR(sum_squares(x.data(), n), ref, 1e-12 * (ref + 1.0)) << "n=" << n;
  }
}

TEST(CpuSumSquares, IdenticalForAnyThreadCount) {
  const int64_t n = 10 * 4096 + 123;
  const auto x = random_vec(static_cast<size_t>(n), 130);
  double r1, r2, r3;
  {
    test::ScopedThreads threads(1);
    r1 = sum_squares(x.data(), n);
  }
  {
    test::ScopedThreads threads(2);
    r2 = sum_squares(x.data(), n);
  }
  {
    test::ScopedThreads threads(3);
    r3 = sum_squares(x.data(), n);
  }
  EXPECT_EQ(r1, r2);
  EXPECT_EQ(r1, r3);
}

}  // namespace
}  // namespace dytrain::cpu
