// The CUDA SwiGLU kernels against the CPU op (kernels/cpu/swiglu.h) run in fp32 on the same bf16 inputs: forward h and
// backward dgate_up (both halves, written over a non-zero buffer, where the CPU op accumulates onto zeros), over
// shapes with F a multiple of 8 (16-byte path) and ragged (scalar path), N = 1 and a realistic (2048, 2752), on
// misaligned views, and the argument checks. gate covers [-10, 10): sigmoid comes within 5e-5 of 0 and 1, and gate
// crosses the zero of silu' near -1.28, where dgate cancels.
//
// Tolerances (rule: 1 bf16 ulp of the reference plus the fp32 difference, per element; see cuda_test_util.h). Both
// sides evaluate the same expression in fp32; the kernel's expf is within 2 ulp, the host's within 1, and each side
// rounds about 5 more times, so the fp32 results differ by under 1e-6 relative to the magnitude of the terms:
// |g s u| for h, |dh g s| for dup, |dh u s| (1 + |g|) for dgate (the bracket 1 + g (1 - s) may cancel, and its
// absolute error grows with |g|). Slack: 2e-6 of it.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/swiglu.h"
#include "kernels/cuda/swiglu.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kSlack = 2e-6;

struct SwigluCase {
  int64_t N;
  int F;
  size_t offset;  // elements each device tensor starts after its allocation: 1 makes the views misaligned
};

void PrintTo(const SwigluCase& c, std::ostream* os) { *os << "N=" << c.N << " F=" << c.F << " offset=" << c.offset; }

std::string case_name(const testing::TestParamInfo<SwigluCase>& info) {
  return "N" + std::to_string(info.param.N) + "_F" + std::to_string(info.param.F) + "_off" +
         std::to_string(info.param.offset);
}

// A bf16 device tensor of the given values preceded by `offset` padding elements; view() skips them.
class OffsetBf16 {
 public:
  OffsetBf16(const std::vector<float>& values, size_t offset) : offset_(offset), buf_(padded(values, offset)) {}
  __nv_bfloat16* view() const { return buf_.get() + offset_; }
  std::vector<float> download() const {
    const std::vector<float> all = buf_.download();
    return std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(offset_), all.end());
  }
  float padding_value() const { return buf_.download()[0]; }

 private:
  static std::vector<float> padded(const std::vector<float>& values, size_t offset) {
    std::vector<float> v(offset, 3.0f);
    v.insert(v.end(), values.begin(), values.end());
    return v;
  }
  size_t offset_;
  DeviceBf16 buf_;
};

double sigmoid(double g) { return 1.0 / (1.0 + std::exp(-g)); }

class CudaSwiglu : public CudaTest, public testing::WithParamInterface<SwigluCase> {};

TEST_P(CudaSwiglu, ForwardAndBackwardMatchCpuOp) {
  const auto [N, F, offset] = GetParam();
  const size_t n = static_cast<size_t>(N) * F;
  const std::vector<float> gate_up = random_bf16_values(2 * n, 1, -10.0f, 10.0f);
  const std::vector<float> dh = random_bf16_values(n, 2, -1.0f, 1.0f);
  std::vector<float> gate(n), up(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t row = i / F, f = i % F;
    gate[i] = gate_up[row * 2 * F + f];
    up[i] = gate_up[row * 2 * F + F + f];
  }
  std::vector<float> h_ref(n), dgate_ref(n, 0.0f), dup_ref(n, 0.0f);
  cpu::swiglu_forward(h_ref.data(), gate.data(), up.data(), static_cast<int64_t>(n));
  cpu::swiglu_backward(dgate_ref.data(), dup_ref.data(), dh.data(), gate.data(), up.data(), static_cast<int64_t>(n));

  OffsetBf16 gate_up_dev(gate_up, offset), dh_dev(dh, offset);
  OffsetBf16 h(std::vector<float>(n, 0.0f), offset);
  OffsetBf16 dgate_up(std::vector<float>(2 * n, 5.0f), offset);  // written, not accumulated: 5 must disappear
  cuda::swiglu_forward(h.view(), gate_up_dev.view(), N, F, nullptr);
  cuda::swiglu_backward(dgate_up.view(), dh_dev.view(), gate_up_dev.view(), N, F, nullptr);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<double> h_slack(n), dgate_slack(n), dup_slack(n);
  std::vector<float> dgate_got(n), dup_got(n);
  const std::vector<float> dgu = dgate_up.download();
  for (size_t i = 0; i < n; ++i) {
    const size_t row = i / F, f = i % F;
    dgate_got[i] = dgu[row * 2 * F + f];
    dup_got[i] = dgu[row * 2 * F + F + f];
    const double g = gate[i], u = up[i], d = dh[i], s = sigmoid(g);
    h_slack[i] = kSlack * std::fabs(g * s * u);
    dup_slack[i] = kSlack * std::fabs(d * g * s);
    dgate_slack[i] = kSlack * std::fabs(d * u * s) * (1.0 + std::fabs(g));
  }
  expect_bf16_near(h.download(), h_ref, h_slack, "h");
  expect_bf16_near(dgate_got, dgate_ref, dgate_slack, "dgate");
  expect_bf16_near(dup_got, dup_ref, dup_slack, "dup");
  if (offset > 0) {
    EXPECT_EQ(h.padding_value(), 3.0f) << "h was written before its view";
    EXPECT_EQ(dgate_up.padding_value(), 3.0f) << "dgate_up was written before its view";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSwiglu,
                         testing::Values(SwigluCase{1, 1, 0}, SwigluCase{1, 8, 0}, SwigluCase{7, 13, 0},
                                         SwigluCase{64, 8, 0}, SwigluCase{33, 100, 0}, SwigluCase{5, 1001, 0},
                                         SwigluCase{1000, 64, 0}, SwigluCase{300, 24, 0}, SwigluCase{2048, 2752, 0},
                                         SwigluCase{7, 64, 1}, SwigluCase{9, 13, 1}),
                         case_name);

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
TEST(CudaSwigluArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced: h / dh at 0x1000, gate_up at 0x100000, far apart for N * F = 64.
  auto* h = reinterpret_cast<__nv_bfloat16*>(uintptr_t{0x1000});
  auto* gate_up = reinterpret_cast<__nv_bfloat16*>(uintptr_t{0x100000});
  auto* dgate_up = reinterpret_cast<__nv_bfloat16*>(uintptr_t{0x200000});
  EXPECT_THROW(cuda::swiglu_forward(h, gate_up, 8, 0, nullptr), std::invalid_argument);   // F < 1
  EXPECT_THROW(cuda::swiglu_forward(h, gate_up, -1, 8, nullptr), std::invalid_argument);  // N < 0
  EXPECT_THROW(cuda::swiglu_forward(nullptr, gate_up, 8, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::swiglu_backward(dgate_up, nullptr, gate_up, 8, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(cuda::swiglu_forward(gate_up + 8, gate_up, 8, 8, nullptr), std::invalid_argument);  // h in gate_up
  try {
    cuda::swiglu_backward(gate_up, h, gate_up, 8, 8, nullptr);  // dgate_up aliases gate_up
    ADD_FAILURE() << "dgate_up == gate_up accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("swiglu_backward"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cuda::swiglu_backward(dgate_up, dgate_up + 100, gate_up, 8, 8, nullptr), std::invalid_argument);
  EXPECT_NO_THROW(cuda::swiglu_backward(gate_up, h, gate_up, 0, 8, nullptr));  // N = 0: nothing to do
}

}  // namespace
}  // namespace dytrain::test
