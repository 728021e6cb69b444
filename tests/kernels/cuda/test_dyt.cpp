// The CUDA DyT kernels against the CPU op (kernels/cpu/dyt.h) run in fp32 on the same bf16 inputs, over the shapes of
// norm_test_shapes: forward and fused residual forward with the site moments, backward and residual backward with
// every parameter gradient, the += conventions, the forward without moments, bit-identical reruns, and the argument
// checks.
//
// Tolerances (rule: 1 bf16 ulp plus the fp32 error of the computation, per element; see cuda_test_util.h):
// - y, dx (bf16): 1 ulp of the reference + 1e-5 x the magnitude of the terms (|gamma| + |beta| forward,
//   |dy gamma alpha| + |old dresidual| backward). The kernel's tanh and 1 - tanh^2 are good to ~4e-6 relative
//   (dyt.cu) and the CPU op's 1 - t*t loses ~1e-7 absolute to cancellation; 1e-5 covers both with margin and only
//   matters where terms cancel, since 1 ulp is 2^-8 relative.
// - new residual: bit-exact, both sides compute bf16(fp32(residual) + fp32(branch)) with IEEE round to nearest.
// - dgamma, dbeta (fp32 column sums): (N + 64) fp32 roundings of the sum of |terms| (a thread adds up to N rows in
//   fp32, then at most 16 row groups are added), + 4e-6 of it for tanh, + 2 roundings of |initial| + |result|.
// - dalpha: each thread sums at most 16 products of a row in fp32 before fp64 takes over: 40 roundings of sum |dt x|,
//   + 1e-5 of it for 1 - tanh^2, + 1e-6 of sum |dy gamma x| for the CPU's cancelling 1 - t*t, + 2 final roundings.
// - moments: the kernel sums at most 16 values of a row in fp32 (bf16 squares are exact in fp32), then fp64, against
//   the CPU's fp64: 2e-6 of sum |x| (or sum x^2); the saturated count and element count exactly.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/dyt.h"
#include "kernels/cuda/dyt.cuh"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

constexpr double kF32 = 0x1p-24;  // unit roundoff of fp32
constexpr float kAlpha = 0.8f;    // with x in [-4, 4), |alpha x| reaches 3.2: saturated and small-|z| elements occur
const cpu::SiteMoments kMomentsBefore{1.5, 2.5, 3.0, 4.0};  // a previous micro-batch: the kernels must add to it

struct DytInputs {
  int64_t N;
  int C;
  std::vector<float> x, branch, dy, dresidual, gamma, beta;
  DytInputs(int64_t n_rows, int channels) : N(n_rows), C(channels) {
    const size_t n = static_cast<size_t>(N) * C;
    x = random_bf16_values(n, 1, -4.0f, 4.0f);
    branch = random_bf16_values(n, 2, -1.0f, 1.0f);
    dy = random_bf16_values(n, 3, -1.0f, 1.0f);
    dresidual = random_bf16_values(n, 4, -1.0f, 1.0f);
    gamma = random_floats(C, 5, 0.5f, 1.5f);
    beta = random_floats(C, 6, -1.0f, 1.0f);
  }
};

void expect_moments_near(const cpu::SiteMoments& got, const cpu::SiteMoments& want, const std::vector<float>& x) {
  double abs_sum = 0.0, sum_sq = 0.0;
  for (float v : x) {
    abs_sum += std::fabs(v);
    sum_sq += static_cast<double>(v) * v;
  }
  EXPECT_NEAR(got.sum, want.sum, 2e-6 * abs_sum + 1e-12) << "moments.sum";
  EXPECT_NEAR(got.sum_sq, want.sum_sq, 2e-6 * sum_sq + 1e-12) << "moments.sum_sq";
  EXPECT_EQ(got.saturated, want.saturated) << "moments.saturated";
  EXPECT_EQ(got.count, want.count) << "moments.count";
}

// y from the CPU op on x, then the kernel's y compared with it. residual: run dyt_residual_forward on
// (residual = x_before, branch) instead, x being the expected new residual.
void check_forward(const DytInputs& in, const std::vector<float>& x, const std::vector<float>* x_before,
                   const float* beta) {
  const int64_t N = in.N;
  const int C = in.C;
  const size_t n = x.size();
  std::vector<float> y_ref(n);
  cpu::SiteMoments moments_ref = kMomentsBefore;
  cpu::dyt_forward(y_ref.data(), x.data(), kAlpha, in.gamma.data(), beta, N, C, &moments_ref);

  DeviceBf16 y(std::vector<float>(n, 0.0f));
  DeviceBf16 x_dev(x_before != nullptr ? *x_before : x);
  DeviceBf16 branch(in.branch);
  DeviceBuffer<float> alpha(std::vector<float>{kAlpha});
  DeviceBuffer<float> gamma(in.gamma);
  DeviceBuffer<float> beta_dev(in.beta);
  DeviceBuffer<cpu::SiteMoments> moments(std::vector<cpu::SiteMoments>{kMomentsBefore});
  DeviceBuffer<unsigned char> workspace(cuda::dyt_forward_workspace_bytes(N, C));
  const float* beta_ptr = beta != nullptr ? beta_dev.get() : nullptr;
  if (x_before != nullptr) {
    cuda::dyt_residual_forward(y.get(), x_dev.get(), branch.get(), alpha.get(), gamma.get(), beta_ptr, N, C,
                               moments.get(), workspace.get(), workspace.size(), nullptr);
  } else {
    cuda::dyt_forward(y.get(), x_dev.get(), alpha.get(), gamma.get(), beta_ptr, N, C, moments.get(), workspace.get(),
                      workspace.size(), nullptr);
  }
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

  if (x_before != nullptr) {
    const std::vector<float> residual = x_dev.download();
    size_t mismatches = 0;
    for (size_t i = 0; i < n; ++i) mismatches += residual[i] != x[i];
    EXPECT_EQ(mismatches, 0u) << "new residual differs from bf16(residual + branch)";
  }
  std::vector<double> slack(n);
  for (size_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % C);
    slack[i] = 1e-5 * (std::fabs(in.gamma[c]) + (beta != nullptr ? std::fabs(beta[c]) : 0.0));
  }
  expect_bf16_near(y.download(), y_ref, slack, "y");
  expect_moments_near(moments.download()[0], moments_ref, x);
}

struct ParamGrads {
  float dalpha = 0.25f;
  std::vector<float> dgamma, dbeta;
};

ParamGrads initial_param_grads(int C) {
  return {0.25f, random_floats(C, 7, -1.0f, 1.0f), random_floats(C, 8, -1.0f, 1.0f)};
}

// The CPU op's dx and parameter gradients against the kernel's; accumulate: dyt_residual_backward onto dresidual.
void check_backward(const DytInputs& in, bool accumulate, bool with_beta) {
  const int64_t N = in.N;
  const int C = in.C;
  const size_t n = in.x.size();
  const ParamGrads before = initial_param_grads(C);

  std::vector<float> dx_ref = accumulate ? in.dresidual : std::vector<float>(n, 0.0f);
  ParamGrads ref = before;
  cpu::dyt_backward(dx_ref.data(), &ref.dalpha, ref.dgamma.data(), with_beta ? ref.dbeta.data() : nullptr, in.dy.data(),
                    in.x.data(), kAlpha, in.gamma.data(), N, C);

  // dyt_backward overwrites dx, so it starts from stale values there too: from zeros, a kernel that wrongly
  // accumulated would pass.
  DeviceBf16 dx(in.dresidual);
  DeviceBf16 dy(in.dy);
  DeviceBf16 x(in.x);
  DeviceBuffer<float> alpha(std::vector<float>{kAlpha});
  DeviceBuffer<float> gamma(in.gamma);
  DeviceBuffer<float> dalpha(std::vector<float>{before.dalpha});
  DeviceBuffer<float> dgamma(before.dgamma);
  DeviceBuffer<float> dbeta(before.dbeta);
  DeviceBuffer<unsigned char> workspace(cuda::dyt_backward_workspace_bytes(N, C));
  float* dbeta_ptr = with_beta ? dbeta.get() : nullptr;
  if (accumulate) {
    cuda::dyt_residual_backward(dx.get(), dalpha.get(), dgamma.get(), dbeta_ptr, dy.get(), x.get(), alpha.get(),
                                gamma.get(), N, C, workspace.get(), workspace.size(), nullptr);
  } else {
    cuda::dyt_backward(dx.get(), dalpha.get(), dgamma.get(), dbeta_ptr, dy.get(), x.get(), alpha.get(), gamma.get(), N,
                       C, workspace.get(), workspace.size(), nullptr);
  }
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<double> dx_slack(n);
  std::vector<double> abs_dy_t(C, 0.0), abs_dy(C, 0.0);
  double abs_dt_x = 0.0, abs_dy_gamma_x = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % C);
    const double t = std::tanh(static_cast<double>(kAlpha) * in.x[i]);
    const double dy_gamma = static_cast<double>(in.dy[i]) * in.gamma[c];
    dx_slack[i] = 1e-5 * (std::fabs(dy_gamma * kAlpha) + (accumulate ? std::fabs(in.dresidual[i]) : 0.0));
    abs_dy_t[c] += std::fabs(in.dy[i] * t);
    abs_dy[c] += std::fabs(in.dy[i]);
    abs_dt_x += std::fabs(dy_gamma * (1.0 - t * t) * in.x[i]);
    abs_dy_gamma_x += std::fabs(dy_gamma * in.x[i]);
  }
  expect_bf16_near(dx.download(), dx_ref, dx_slack, accumulate ? "dresidual" : "dx");

  const double column_roundings = (static_cast<double>(N) + 64.0) * kF32;
  std::vector<double> dgamma_tol(C), dbeta_tol(C);
  for (int c = 0; c < C; ++c) {
    dgamma_tol[c] =
        (column_roundings + 4e-6) * abs_dy_t[c] + 2 * kF32 * (std::fabs(before.dgamma[c]) + std::fabs(ref.dgamma[c]));
    dbeta_tol[c] = column_roundings * abs_dy[c] + 2 * kF32 * (std::fabs(before.dbeta[c]) + std::fabs(ref.dbeta[c]));
  }
  expect_each_near(dgamma.download(), ref.dgamma, dgamma_tol, "dgamma");
  if (with_beta) {
    expect_each_near(dbeta.download(), ref.dbeta, dbeta_tol, "dbeta");
  } else {
    EXPECT_EQ(dbeta.download(), before.dbeta) << "dbeta was written although it was not passed";
  }
  const double dalpha_tol = (40 * kF32 + 1e-5) * abs_dt_x + 1e-6 * abs_dy_gamma_x +
                            2 * kF32 * (std::fabs(before.dalpha) + std::fabs(ref.dalpha));
  EXPECT_NEAR(dalpha.download()[0], ref.dalpha, dalpha_tol) << "dalpha";
}

class CudaDyT : public CudaTest, public testing::WithParamInterface<Shape> {};

TEST_P(CudaDyT, ForwardMatchesCpuOp) {
  const DytInputs in(GetParam().N, GetParam().C);
  {
    SCOPED_TRACE("dyt_forward");
    check_forward(in, in.x, nullptr, in.beta.data());
  }
  {
    SCOPED_TRACE("dyt_residual_forward");
    std::vector<float> new_residual(in.x.size());
    for (size_t i = 0; i < in.x.size(); ++i) new_residual[i] = round_bf16(in.x[i] + in.branch[i]);
    check_forward(in, new_residual, &in.x, in.beta.data());
  }
}

TEST_P(CudaDyT, BackwardMatchesCpuOp) {
  const DytInputs in(GetParam().N, GetParam().C);
  {
    SCOPED_TRACE("dyt_backward");
    check_backward(in, /*accumulate=*/false, /*with_beta=*/true);
  }
  {
    SCOPED_TRACE("dyt_residual_backward");
    check_backward(in, /*accumulate=*/true, /*with_beta=*/true);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaDyT, testing::ValuesIn(norm_test_shapes()), shape_name);

using CudaDyTCases = CudaTest;

TEST_F(CudaDyTCases, WithoutBias) {
  for (Shape s : {Shape{7, 768}, Shape{64, 13}}) {
    SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
    const DytInputs in(s.N, s.C);
    check_forward(in, in.x, nullptr, nullptr);
    check_backward(in, /*accumulate=*/false, /*with_beta=*/false);
  }
}

// Without moments (the model's forward outside log steps) the forward takes no workspace and writes the same bits.
TEST_F(CudaDyTCases, ForwardWithoutMomentsNeedsNoWorkspace) {
  for (Shape s : {Shape{1000, 768}, Shape{64, 13}}) {
    SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
    const DytInputs in(s.N, s.C);
    DeviceBf16 branch(in.branch);
    DeviceBuffer<float> alpha(std::vector<float>{kAlpha}), gamma(in.gamma), beta(in.beta);
    DeviceBuffer<cpu::SiteMoments> moments(std::vector<cpu::SiteMoments>{kMomentsBefore});
    DeviceBuffer<unsigned char> workspace(cuda::dyt_forward_workspace_bytes(s.N, s.C));
    std::vector<uint16_t> bits[2][2];  // [with moments][y, residual]
    for (int with = 0; with < 2; ++with) {
      DeviceBf16 y(std::vector<float>(in.x.size(), 0.0f)), residual(in.x);
      cuda::dyt_residual_forward(y.get(), residual.get(), branch.get(), alpha.get(), gamma.get(), beta.get(), s.N, s.C,
                                 with ? moments.get() : nullptr, with ? workspace.get() : nullptr,
                                 with ? workspace.size() : 0, nullptr);
      DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
      bits[with][0] = y.download_bits();
      bits[with][1] = residual.download_bits();
    }
    EXPECT_TRUE(bits[0][0] == bits[1][0]) << "y depends on whether moments are gathered";
    EXPECT_TRUE(bits[0][1] == bits[1][1]) << "the new residual depends on whether moments are gathered";
  }
}

// Forward with moments and backward, twice on the same inputs and initial gradients: every output bit-identical.
TEST_F(CudaDyTCases, RerunsAreBitIdentical) {
  for (Shape s : {Shape{1000, 4096}, Shape{4096, 768}, Shape{3000, 13}}) {
    SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
    const DytInputs in(s.N, s.C);
    const ParamGrads before = initial_param_grads(s.C);
    DeviceBf16 branch(in.branch), y(std::vector<float>(in.x.size())), dy(in.dy);
    DeviceBuffer<float> alpha(std::vector<float>{kAlpha}), gamma(in.gamma), beta(in.beta);
    DeviceBuffer<unsigned char> fwd_ws(cuda::dyt_forward_workspace_bytes(s.N, s.C));
    DeviceBuffer<unsigned char> bwd_ws(cuda::dyt_backward_workspace_bytes(s.N, s.C));
    std::vector<std::vector<uint16_t>> bf16_out[2];
    std::vector<std::vector<float>> f32_out[2];
    std::vector<cpu::SiteMoments> moments_out[2];
    for (int run = 0; run < 2; ++run) {
      DeviceBf16 res_run(in.x), dres_run(in.dresidual);
      DeviceBuffer<cpu::SiteMoments> moments(std::vector<cpu::SiteMoments>{kMomentsBefore});
      DeviceBuffer<float> dalpha(std::vector<float>{before.dalpha}), dgamma(before.dgamma), dbeta(before.dbeta);
      cuda::dyt_residual_forward(y.get(), res_run.get(), branch.get(), alpha.get(), gamma.get(), beta.get(), s.N, s.C,
                                 moments.get(), fwd_ws.get(), fwd_ws.size(), nullptr);
      cuda::dyt_residual_backward(dres_run.get(), dalpha.get(), dgamma.get(), dbeta.get(), dy.get(), res_run.get(),
                                  alpha.get(), gamma.get(), s.N, s.C, bwd_ws.get(), bwd_ws.size(), nullptr);
      DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
      bf16_out[run] = {y.download_bits(), res_run.download_bits(), dres_run.download_bits()};
      f32_out[run] = {dalpha.download(), dgamma.download(), dbeta.download()};
      moments_out[run] = moments.download();
    }
    EXPECT_TRUE(bf16_out[0] == bf16_out[1]) << "y, residual or dresidual differ between runs";
    EXPECT_TRUE(f32_out[0] == f32_out[1]) << "dalpha, dgamma or dbeta differ between runs";
    EXPECT_EQ(moments_out[0][0].sum, moments_out[1][0].sum);
    EXPECT_EQ(moments_out[0][0].sum_sq, moments_out[1][0].sum_sq);
    EXPECT_EQ(moments_out[0][0].saturated, moments_out[1][0].saturated);
  }
}

TEST_F(CudaDyTCases, SmallWorkspaceIsRejected) {
  const int64_t N = 64;
  const int C = 768;
  DeviceBf16 x(std::vector<float>(N * C, 0.5f)), dx(std::vector<float>(N * C, 0.0f));
  DeviceBuffer<float> alpha(std::vector<float>{kAlpha}), params(std::vector<float>(C, 1.0f)), dalpha(1);
  const size_t need = cuda::dyt_backward_workspace_bytes(N, C);
  ASSERT_GT(need, 0u);
  DeviceBuffer<unsigned char> workspace(need);
  EXPECT_THROW(cuda::dyt_backward(dx.get(), dalpha.get(), params.get(), nullptr, x.get(), x.get(), alpha.get(),
                                  params.get(), N, C, workspace.get(), need - 1, nullptr),
               std::invalid_argument);
}

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
TEST(CudaDyTArguments, AreCheckedBeforeAnyDeviceWork) {
  // Stand-in device addresses, never dereferenced: 256 is 16-byte aligned, 258 is not.
  auto* act = reinterpret_cast<__nv_bfloat16*>(uintptr_t{256});
  auto* odd = reinterpret_cast<__nv_bfloat16*>(uintptr_t{258});
  auto* par = reinterpret_cast<float*>(uintptr_t{256});
  auto forward = [&](__nv_bfloat16* x, const float* gamma, int C) {
    cuda::dyt_forward(act, x, par, gamma, nullptr, 4, C, nullptr, nullptr, 0, nullptr);
  };
  EXPECT_THROW(forward(act, par, 0), std::invalid_argument);      // C < 1
  EXPECT_THROW(forward(act, par, 8200), std::invalid_argument);   // C % 8 == 0 above 8192
  EXPECT_THROW(forward(act, par, 4097), std::invalid_argument);   // ragged C above 4096
  EXPECT_THROW(forward(odd, par, 8), std::invalid_argument);      // misaligned with 16-byte accesses
  EXPECT_THROW(forward(act, nullptr, 8), std::invalid_argument);  // missing gamma
  EXPECT_NO_THROW(cuda::dyt_forward(act, odd, par, par, nullptr, 0, 13, nullptr, nullptr, 0, nullptr));  // N = 0
  try {
    cuda::dyt_residual_backward(act, par, par, nullptr, act, act, par, par, -1, 8, nullptr, 0, nullptr);
    ADD_FAILURE() << "N = -1 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dyt_residual_backward"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain::test
