// The CUDA RMSNorm kernels against the CPU op (kernels/cpu/rmsnorm.h) run in fp32 on the same bf16 inputs, over the
// shapes of norm_test_shapes: forward and fused residual forward (y, rstd, moments), backward and residual backward
// (dx, dweight), the forward without moments, bit-identical reruns, and the argument checks. The backward gets the
// CPU's rstd on both sides, so it is checked apart from the forward.
//
// Tolerances (rule: 1 bf16 ulp plus the fp32 error of the computation, per element; see cuda_test_util.h):
// - rstd: 5e-6 relative. The kernel's sum of squares adds at most 16 values per thread, a 5-step warp tree and at
//   most 16 warps in fp32 (under 40 roundings of a sum of positive terms, 2.4e-6), halved by the square root, plus
//   the division, eps and rsqrtf (2 ulp); the CPU's is fp64.
// - y (bf16): 1 ulp + 1e-5 |x rstd w| (the rstd difference above, with margin).
// - dx (bf16): 1 ulp + 1e-5 (|rstd w dy| + |x| rstd^3 / C sum_j |w_j dy_j x_j| + |old dresidual|): the row's dot
//   product in fp32 has the same ~40 roundings, and the two terms of dx may cancel.
// - dweight (fp32 column sums): (N + 64) fp32 roundings of sum |dy x rstd| (a thread adds up to N rows, then at most 16
//   row groups are added), + 1e-6 of it for the products, + 2 roundings of |initial| + |result|.
// - moments: as for DyT (2e-6 of sum |x| or sum x^2; counts exact, saturated stays as it was).
// - new residual: bit-exact.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/rmsnorm.h"
#include "kernels/cuda/rmsnorm.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kF32 = 0x1p-24;  // unit roundoff of fp32
constexpr float kEps = 1e-5f;
const cpu::SiteMoments kMomentsBefore{1.5, 2.5, 3.0, 4.0};  // a previous micro-batch: the kernels must add to it

struct RmsInputs {
  int64_t N;
  int C;
  std::vector<float> x, branch, dy, dresidual, weight;
  RmsInputs(int64_t n_rows, int channels) : N(n_rows), C(channels) {
    const size_t n = static_cast<size_t>(N) * C;
    x = random_bf16_values(n, 11, -4.0f, 4.0f);
    branch = random_bf16_values(n, 12, -1.0f, 1.0f);
    dy = random_bf16_values(n, 13, -1.0f, 1.0f);
    dresidual = random_bf16_values(n, 14, -1.0f, 1.0f);
    weight = random_floats(C, 15, 0.5f, 1.5f);
  }
};

// The CPU op on x against the kernel; with x_before, rmsnorm_residual_forward on (residual = x_before, branch), x being
// the expected new residual.
void check_forward(const RmsInputs& in, const std::vector<float>& x, const std::vector<float>* x_before) {
  const int64_t N = in.N;
  const int C = in.C;
  const size_t n = x.size();
  std::vector<float> y_ref(n), rstd_ref(N);
  cpu::SiteMoments moments_ref = kMomentsBefore;
  cpu::rmsnorm_forward(y_ref.data(), rstd_ref.data(), x.data(), in.weight.data(), kEps, N, C, &moments_ref);

  DeviceBf16 y(std::vector<float>(n, 0.0f));
  DeviceBf16 x_dev(x_before != nullptr ? *x_before : x);
  DeviceBf16 branch(in.branch);
  DeviceBuffer<float> rstd(N);
  DeviceBuffer<float> weight(in.weight);
  DeviceBuffer<cpu::SiteMoments> moments(std::vector<cpu::SiteMoments>{kMomentsBefore});
  DeviceBuffer<unsigned char> workspace(cuda::rmsnorm_forward_workspace_bytes(N, C));
  if (x_before != nullptr) {
    cuda::rmsnorm_residual_forward(y.get(), rstd.get(), x_dev.get(), branch.get(), weight.get(), kEps, N, C,
                                   moments.get(), workspace.get(), workspace.size(), nullptr);
  } else {
    cuda::rmsnorm_forward(y.get(), rstd.get(), x_dev.get(), weight.get(), kEps, N, C, moments.get(), workspace.get(),
                          workspace.size(), nullptr);
  }
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

  if (x_before != nullptr) {
    const std::vector<float> residual = x_dev.download();
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) mismatches += residual[i] != x[i];
    EXPECT_EQ(mismatches, 0u) << "new residual differs from bf16(residual + branch)";
  }
  std::vector<double> rstd_tol(N);
  for (int64_t r = 0; r < N; ++r) rstd_tol[r] = 5e-6 * rstd_ref[r];
  expect_each_near(rstd.download(), rstd_ref, rstd_tol, "rstd");
  std::vector<double> slack(n);
  for (size_t i = 0; i < n; ++i) slack[i] = 1e-5 * std::fabs(x[i] * rstd_ref[i / C] * in.weight[i % C]);
  expect_bf16_near(y.download(), y_ref, slack, "y");

  const cpu::SiteMoments got = moments.download()[0];
  double abs_sum = 0.0, sum_sq = 0.0;
  for (float v : x) {
    abs_sum += std::fabs(v);
    sum_sq += static_cast<double>(v) * v;
  }
  EXPECT_NEAR(got.sum, moments_ref.sum, 2e-6 * abs_sum + 1e-12) << "moments.sum";
  EXPECT_NEAR(got.sum_sq, moments_ref.sum_sq, 2e-6 * sum_sq + 1e-12) << "moments.sum_sq";
  EXPECT_EQ(got.saturated, moments_ref.saturated) << "moments.saturated";
  EXPECT_EQ(got.count, moments_ref.count) << "moments.count";
}

// The CPU op's dx and dweight against the kernel's; accumulate: rmsnorm_residual_backward onto dresidual.
void check_backward(const RmsInputs& in, bool accumulate) {
  const int64_t N = in.N;
  const int C = in.C;
  const size_t n = in.x.size();
  std::vector<float> y_unused(n), rstd_ref(N);
  cpu::rmsnorm_forward(y_unused.data(), rstd_ref.data(), in.x.data(), in.weight.data(), kEps, N, C, nullptr);
  const std::vector<float> dweight_before = random_floats(C, 16, -1.0f, 1.0f);

  std::vector<float> dx_ref = accumulate ? in.dresidual : std::vector<float>(n, 0.0f);
  std::vector<float> dweight_ref = dweight_before;
  cpu::rmsnorm_backward(dx_ref.data(), dweight_ref.data(), in.dy.data(), in.x.data(), in.weight.data(), rstd_ref.data(),
                        N, C);

  // rmsnorm_backward overwrites dx, so it starts from stale values there too: from zeros, a kernel that wrongly
  // accumulated would pass.
  DeviceBf16 dx(in.dresidual);
  DeviceBf16 dy(in.dy);
  DeviceBf16 x(in.x);
  DeviceBuffer<float> weight(in.weight);
  DeviceBuffer<float> rstd(rstd_ref);
  DeviceBuffer<float> dweight(dweight_before);
  DeviceBuffer<unsigned char> workspace(cuda::rmsnorm_backward_workspace_bytes(N, C));
  if (accumulate) {
    cuda::rmsnorm_residual_backward(dx.get(), dweight.get(), dy.get(), x.get(), weight.get(), rstd.get(), N, C,
                                    workspace.get(), workspace.size(), nullptr);
  } else {
    cuda::rmsnorm_backward(dx.get(), dweight.get(), dy.get(), x.get(), weight.get(), rstd.get(), N, C, workspace.get(),
                           workspace.size(), nullptr);
  }
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<double> row_abs_dot(N, 0.0);  // sum_j |w_j dy_j x_j|
  std::vector<double> abs_dw_terms(C, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % C);
    row_abs_dot[i / C] += std::fabs(static_cast<double>(in.weight[c]) * in.dy[i] * in.x[i]);
    abs_dw_terms[c] += std::fabs(static_cast<double>(in.dy[i]) * in.x[i] * rstd_ref[i / C]);
  }
  std::vector<double> dx_slack(n);
  for (size_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % C);
    const double r = rstd_ref[i / C];
    dx_slack[i] =
        1e-5 * (std::fabs(r * in.weight[c] * in.dy[i]) + std::fabs(in.x[i]) * r * r * r / C * row_abs_dot[i / C] +
                (accumulate ? std::fabs(in.dresidual[i]) : 0.0));
  }
  expect_bf16_near(dx.download(), dx_ref, dx_slack, accumulate ? "dresidual" : "dx");

  std::vector<double> dweight_tol(C);
  for (int c = 0; c < C; ++c) {
    dweight_tol[c] = ((static_cast<double>(N) + 64.0) * kF32 + 1e-6) * abs_dw_terms[c] +
                     2 * kF32 * (std::fabs(dweight_before[c]) + std::fabs(dweight_ref[c]));
  }
  expect_each_near(dweight.download(), dweight_ref, dweight_tol, "dweight");
}

class CudaRmsNorm : public CudaTest, public testing::WithParamInterface<Shape> {};

TEST_P(CudaRmsNorm, ForwardMatchesCpuOp) {
  const RmsInputs in(GetParam().N, GetParam().C);
  {
    SCOPED_TRACE("rmsnorm_forward");
    check_forward(in, in.x, nullptr);
  }
  {
    SCOPED_TRACE("rmsnorm_residual_forward");
    std::vector<float> new_residual(in.x.size());
    for (size_t i = 0; i < in.x.size(); ++i) new_residual[i] = round_bf16(in.x[i] + in.branch[i]);
    check_forward(in, new_residual, &in.x);
  }
}

TEST_P(CudaRmsNorm, BackwardMatchesCpuOp) {
  const RmsInputs in(GetParam().N, GetParam().C);
  {
    SCOPED_TRACE("rmsnorm_backward");
    check_backward(in, /*accumulate=*/false);
  }
  {
    SCOPED_TRACE("rmsnorm_residual_backward");
    check_backward(in, /*accumulate=*/true);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaRmsNorm, testing::ValuesIn(norm_test_shapes()), shape_name);

using CudaRmsNormCases = CudaTest;

// Without moments (the model's forward outside log steps) the forward takes no workspace and writes the same bits.
TEST_F(CudaRmsNormCases, ForwardWithoutMomentsNeedsNoWorkspace) {
  for (Shape s : {Shape{1000, 768}, Shape{64, 13}}) {
    SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
    const RmsInputs in(s.N, s.C);
    DeviceBf16 branch(in.branch);
    DeviceBuffer<float> weight(in.weight);
    DeviceBuffer<cpu::SiteMoments> moments(std::vector<cpu::SiteMoments>{kMomentsBefore});
    DeviceBuffer<unsigned char> workspace(cuda::rmsnorm_forward_workspace_bytes(s.N, s.C));
    std::vector<uint16_t> bits[2][2];  // [with moments][y, residual]
    std::vector<float> rstd_out[2];
    for (int with = 0; with < 2; ++with) {
      DeviceBf16 y(std::vector<float>(in.x.size(), 0.0f)), residual(in.x);
      DeviceBuffer<float> rstd(s.N);
      cuda::rmsnorm_residual_forward(y.get(), rstd.get(), residual.get(), branch.get(), weight.get(), kEps, s.N, s.C,
                                     with ? moments.get() : nullptr, with ? workspace.get() : nullptr,
                                     with ? workspace.size() : 0, nullptr);
      DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
      bits[with][0] = y.download_bits();
      bits[with][1] = residual.download_bits();
      rstd_out[with] = rstd.download();
    }
    EXPECT_TRUE(bits[0][0] == bits[1][0]) << "y depends on whether moments are gathered";
    EXPECT_TRUE(bits[0][1] == bits[1][1]) << "the new residual depends on whether moments are gathered";
    EXPECT_TRUE(rstd_out[0] == rstd_out[1]) << "rstd depends on whether moments are gathered";
  }
}

// Forward with moments and backward, twice on the same inputs and initial gradients: every output bit-identical.
TEST_F(CudaRmsNormCases, RerunsAreBitIdentical) {
  for (Shape s : {Shape{1000, 4096}, Shape{4096, 768}, Shape{3000, 13}}) {
    SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
    const RmsInputs in(s.N, s.C);
    const std::vector<float> dweight_before = random_floats(s.C, 16, -1.0f, 1.0f);
    DeviceBf16 branch(in.branch), y(std::vector<float>(in.x.size())), dy(in.dy);
    DeviceBuffer<float> weight(in.weight), rstd(s.N);
    DeviceBuffer<unsigned char> fwd_ws(cuda::rmsnorm_forward_workspace_bytes(s.N, s.C));
    DeviceBuffer<unsigned char> bwd_ws(cuda::rmsnorm_backward_workspace_bytes(s.N, s.C));
    std::vector<std::vector<uint16_t>> bf16_out[2];
    std::vector<std::vector<float>> f32_out[2];
    std::vector<cpu::SiteMoments> moments_out[2];
    for (int run = 0; run < 2; ++run) {
      DeviceBf16 res_run(in.x), dres_run(in.dresidual);
      DeviceBuffer<cpu::SiteMoments> moments(std::vector<cpu::SiteMoments>{kMomentsBefore});
      DeviceBuffer<float> dweight(dweight_before);
      cuda::rmsnorm_residual_forward(y.get(), rstd.get(), res_run.get(), branch.get(), weight.get(), kEps, s.N, s.C,
                                     moments.get(), fwd_ws.get(), fwd_ws.size(), nullptr);
      cuda::rmsnorm_residual_backward(dres_run.get(), dweight.get(), dy.get(), res_run.get(), weight.get(), rstd.get(),
                                      s.N, s.C, bwd_ws.get(), bwd_ws.size(), nullptr);
      DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
      bf16_out[run] = {y.download_bits(), res_run.download_bits(), dres_run.download_bits()};
      f32_out[run] = {rstd.download(), dweight.download()};
      moments_out[run] = moments.download();
    }
    EXPECT_TRUE(bf16_out[0] == bf16_out[1]) << "y, residual or dresidual differ between runs";
    EXPECT_TRUE(f32_out[0] == f32_out[1]) << "rstd or dweight differ between runs";
    EXPECT_EQ(moments_out[0][0].sum, moments_out[1][0].sum);
    EXPECT_EQ(moments_out[0][0].sum_sq, moments_out[1][0].sum_sq);
  }
}

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
TEST(CudaRmsNormArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced: 256 is 16-byte aligned, 260 is not.
  auto* act = reinterpret_cast<__nv_bfloat16*>(uintptr_t{256});
  auto* par = reinterpret_cast<float*>(uintptr_t{256});
  auto* odd = reinterpret_cast<float*>(uintptr_t{260});
  auto backward = [&](const float* weight, const float* rstd, int C) {
    cuda::rmsnorm_backward(act, par, act, act, weight, rstd, 4, C, nullptr, 0, nullptr);
  };
  EXPECT_THROW(backward(par, par, 8200), std::invalid_argument);    // C % 8 == 0 above 8192
  EXPECT_THROW(backward(odd, par, 64), std::invalid_argument);      // weight misaligned for 16-byte loads
  EXPECT_THROW(backward(par, nullptr, 64), std::invalid_argument);  // missing rstd
  try {
    cuda::rmsnorm_residual_forward(act, par, act, nullptr, par, kEps, 4, 64, nullptr, nullptr, 0, nullptr);
    ADD_FAILURE() << "null branch accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("rmsnorm_residual_forward: branch is null"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain::test
