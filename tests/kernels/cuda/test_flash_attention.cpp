// The CUDA flash attention (kernels/cuda/flash_attention.cuh) against the CPU op (kernels/cpu/attention.h) run in
// fp32 on the same bf16 inputs, with the tolerances of the materialized path's test (attention_test_util.h): out, dq,
// dk, dv within 3x a naive bf16 attention's error, lse against double precision, the d_qkv padding untouched; against
// the materialized path (kernels/cuda/attention.cuh) on the same inputs; bit-identical reruns; and the argument checks,
// which run without a GPU. Shapes: ragged T around the 64-row tiles, GQA ratios 1, 2 and 4, head dims 64 and 128.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/matmul.cuh"
#include "tests/kernels/cuda/attention_test_util.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

using bf16 = __nv_bfloat16;

enum class Path { flash, materialized };

// Forward, then backward from c.dout, on one path. As in test_attention.cpp: the workspace starts as NaN bytes and
// the d_qkv buffer at kPad everywhere, so a read of anything unwritten and an accumulation (+=) both show up.
GpuResult run_path(const AttnCase& c, Path path) {
  const AttnShape& s = c.s;
  const int64_t q_cols = static_cast<int64_t>(s.Hq) * s.D;
  const int64_t kv_cols = static_cast<int64_t>(s.Hkv) * s.D;
  DeviceBf16 qkv(c.qkv);
  DeviceBf16 dqkv(std::vector<float>(c.qkv.size(), kPad));
  DeviceBf16 out(std::vector<float>(c.q.size(), 0.0f));
  DeviceBf16 dout(c.dout);
  DeviceBuffer<float> lse(static_cast<size_t>(s.B) * s.Hq * s.T);
  const size_t ws_bytes = path == Path::flash ? cuda::flash_attention_workspace_bytes(s.B, s.T, s.Hq)
                                              : cuda::attention_workspace_bytes(s.B, s.T, s.Hq, s.Hkv, s.D);
  DeviceBuffer<unsigned char> workspace(ws_bytes);
  DYTRAIN_CUDA_CHECK(cudaMemset(workspace.get(), 0xff, ws_bytes));

  const bf16* q = qkv.get();
  const bf16* k = q + q_cols;
  const bf16* v = k + kv_cols;
  bf16* dq = dqkv.get();
  if (path == Path::flash) {
    cuda::flash_attention_forward(out.get(), lse.get(), q, k, v, c.ld, s.B, s.T, s.Hq, s.Hkv, s.D, nullptr);
    cuda::flash_attention_backward(dq, dq + q_cols, dq + q_cols + kv_cols, dout.get(), out.get(), lse.get(), q, k, v,
                                   c.ld, s.B, s.T, s.Hq, s.Hkv, s.D, workspace.get(), ws_bytes, nullptr);
  } else {
    cuda::Blas blas(nullptr);
    cuda::attention_forward(blas, out.get(), lse.get(), q, k, v, c.ld, s.B, s.T, s.Hq, s.Hkv, s.D, workspace.get(),
                            ws_bytes);
    cuda::attention_backward(blas, dq, dq + q_cols, dq + q_cols + kv_cols, dout.get(), out.get(), lse.get(), q, k, v,
                             c.ld, s.B, s.T, s.Hq, s.Hkv, s.D, workspace.get(), ws_bytes);
  }
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  GpuResult r;
  r.out = out.download();
  r.out_bits = out.download_bits();
  r.lse = lse.download();
  r.dqkv = dqkv.download();
  r.dqkv_bits = dqkv.download_bits();
  return r;
}

class CudaFlashAttention : public CudaTest, public testing::WithParamInterface<AttnShape> {};

TEST_P(CudaFlashAttention, MatchesCpuOp) {
  const AttnCase c(GetParam());
  expect_matches_cpu(c, run_path(c, Path::flash));
}

// Both paths are within the naive bound of the CPU op (3 e_naive + ulp / 16 each, attention_test_util.h), so they
// differ by at most twice that: a bound from the triangle inequality, not a tuned number. lse: twice the lse bound.
TEST_P(CudaFlashAttention, MatchesMaterializedPath) {
  const AttnCase c(GetParam());
  const AttnShape& s = c.s;
  const GpuResult flash = run_path(c, Path::flash);
  const GpuResult materialized = run_path(c, Path::materialized);
  const Grads ref = cpu_reference(c);
  const Grads naive = naive_bf16_attention(c);
  const int64_t q_cols = static_cast<int64_t>(s.Hq) * s.D;
  const int64_t kv_cols = static_cast<int64_t>(s.Hkv) * s.D;
  auto expect_close = [&](const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& r,
                          const std::vector<float>& n, const std::string& name) {
    const double tol = 2.0 * (3.0 * max_abs_diff(n, r) + bf16_ulp(max_abs(r)) / 16.0);
    EXPECT_LE(max_abs_diff(a, b), tol) << name << ": flash against materialized";
  };
  expect_close(flash.out, materialized.out, ref.out, naive.out, "out");
  expect_close(columns(flash.dqkv, c.ld, 0, q_cols), columns(materialized.dqkv, c.ld, 0, q_cols), ref.dq, naive.dq,
               "dq");
  expect_close(columns(flash.dqkv, c.ld, q_cols, kv_cols), columns(materialized.dqkv, c.ld, q_cols, kv_cols), ref.dk,
               naive.dk, "dk");
  expect_close(columns(flash.dqkv, c.ld, q_cols + kv_cols, kv_cols),
               columns(materialized.dqkv, c.ld, q_cols + kv_cols, kv_cols), ref.dv, naive.dv, "dv");
  const LseReference lse = lse_reference(c);
  std::vector<double> lse_tol(lse.tol.size());
  for (size_t i = 0; i < lse_tol.size(); ++i) lse_tol[i] = 2.0 * lse.tol[i];
  expect_each_near(flash.lse, materialized.lse, lse_tol, "lse, flash against materialized");
}

// One token; ragged T inside the first tile with rep 2; one whole tile with rep 4; a 1-row second tile at D 128; two
// whole tiles without grouping; T = 200 (a partial fourth tile) at D 128 with rep 4 and B = 2; a 4-row last tile of
// nine at D 64 with rep 2 (several CTAs per key tile's query loop, heavy-first launch order).
INSTANTIATE_TEST_SUITE_P(Shapes, CudaFlashAttention,
                         testing::Values(AttnShape{1, 1, 2, 2, 64}, AttnShape{2, 37, 4, 2, 64},
                                         AttnShape{1, 64, 4, 1, 64}, AttnShape{1, 65, 4, 4, 128},
                                         AttnShape{2, 128, 8, 8, 64}, AttnShape{2, 200, 8, 2, 128},
                                         AttnShape{1, 516, 4, 2, 64}),
                         attn_shape_name);

using CudaFlashAttentionCases = CudaTest;

// No atomics and fixed loop orders: forward and backward twice on the same inputs give the same bits.
TEST_F(CudaFlashAttentionCases, RerunsAreBitIdentical) {
  for (const AttnShape& s : {AttnShape{2, 130, 8, 2, 64}, AttnShape{1, 200, 8, 2, 128}}) {
    SCOPED_TRACE(attn_shape_name(testing::TestParamInfo<AttnShape>(s, 0)));
    const AttnCase c(s);
    const GpuResult a = run_path(c, Path::flash);
    const GpuResult b = run_path(c, Path::flash);
    EXPECT_TRUE(a.out_bits == b.out_bits) << "out differs between runs";
    EXPECT_TRUE(a.lse == b.lse) << "lse differs between runs";
    EXPECT_TRUE(a.dqkv_bits == b.dqkv_bits) << "dq, dk or dv differ between runs";
  }
}

// These run with or without a GPU: the entry points check their arguments before any CUDA call.
const bf16* fake(uintptr_t a) { return reinterpret_cast<const bf16*>(a); }

// Calls the entry point `backward ? flash_attention_backward : flash_attention_forward` with stand-in addresses;
// expects std::invalid_argument naming the op and containing `expect`.
void expect_rejected(bool backward, int T, int D, int64_t ld, size_t workspace_bytes, const std::string& expect) {
  const int B = 2, Hq = 4, Hkv = 2;
  bf16* p = const_cast<bf16*>(fake(256));
  float* lse = reinterpret_cast<float*>(512);
  void* ws = reinterpret_cast<void*>(4096);
  const std::string op = backward ? "flash_attention_backward" : "flash_attention_forward";
  try {
    if (backward) {
      cuda::flash_attention_backward(p, p, p, p, p, lse, p, p, p, ld, B, T, Hq, Hkv, D, ws, workspace_bytes, nullptr);
    } else {
      cuda::flash_attention_forward(p, lse, p, p, p, ld, B, T, Hq, Hkv, D, nullptr);
    }
    ADD_FAILURE() << op << ": no exception; expected one containing " << expect;
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(expect), std::string::npos) << what;
    EXPECT_NE(what.find("dytrain::cuda::" + op), std::string::npos) << what;
  }
}

TEST(CudaFlashAttentionArguments, AreCheckedWithoutDeviceWork) {
  const int T = 100;
  const size_t ws = cuda::flash_attention_workspace_bytes(2, T, 4);
  EXPECT_EQ(ws, size_t{2} * 4 * T * sizeof(float));  // one fp32 delta per query row
  EXPECT_TRUE(cuda::flash_attention_supports(64));
  EXPECT_TRUE(cuda::flash_attention_supports(128));
  EXPECT_FALSE(cuda::flash_attention_supports(96));
  expect_rejected(false, T, 96, 8 * 96, ws, "model.attention: materialized");   // no kernel for this head dim
  expect_rejected(true, T, 32, 8 * 32, ws, "model.attention: materialized");
  expect_rejected(false, T, 64, 4 * 64 - 8, ws, "ld_qkv");                     // narrower than a q row
  expect_rejected(true, T, 64, 8 * 64, ws - 1, "flash_attention_workspace_bytes");
  expect_rejected(true, 0, 64, 8 * 64, ws, "B, T, Hq, Hkv >= 1");
}

}  // namespace
}  // namespace dytrain::test
