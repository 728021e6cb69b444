// The CUDA causal grouped-query attention (kernels/cuda/attention.cuh) against the CPU op (kernels/cpu/attention.h)
// run in fp32 on the same bf16 inputs: out, dq, dk, dv, and lse against a double-precision host computation; q, k, v
// and dq, dk, dv as column slices of padded qkv buffers (ld_qkv > (Hq + 2 Hkv) * D), with the padding checked
// untouched; bit-identical reruns; and the argument checks, which run without a GPU.
//
// Tolerances: attention_test_util.h.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/matmul.cuh"
#include "tests/kernels/cuda/attention_test_util.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace dytrain::test {
namespace {

using bf16 = __nv_bfloat16;

// Forward, then backward from c.dout, on one Blas; the workspace starts as NaN bytes so that a read of anything the
// op did not write shows up, and the d_qkv buffer starts at kPad everywhere so that = (not +=) is checked.
GpuResult run_gpu(const AttnCase& c, cuda::Blas& blas) {
  const AttnShape& s = c.s;
  const int64_t q_cols = static_cast<int64_t>(s.Hq) * s.D;
  const int64_t kv_cols = static_cast<int64_t>(s.Hkv) * s.D;
  DeviceBf16 qkv(c.qkv);
  DeviceBf16 dqkv(std::vector<float>(c.qkv.size(), kPad));
  DeviceBf16 out(std::vector<float>(c.q.size(), 0.0f));
  DeviceBf16 dout(c.dout);
  DeviceBuffer<float> lse(static_cast<size_t>(s.B) * s.Hq * s.T);
  const size_t ws_bytes = cuda::attention_workspace_bytes(s.B, s.T, s.Hq, s.Hkv, s.D);
  DeviceBuffer<unsigned char> workspace(ws_bytes);
  DYTRAIN_CUDA_CHECK(cudaMemset(workspace.get(), 0xff, ws_bytes));

  const bf16* q = qkv.get();
  const bf16* k = q + q_cols;
  const bf16* v = k + kv_cols;
  cuda::attention_forward(blas, out.get(), lse.get(), q, k, v, c.ld, s.B, s.T, s.Hq, s.Hkv, s.D, workspace.get(),
                          ws_bytes);
  bf16* dq = dqkv.get();
  cuda::attention_backward(blas, dq, dq + q_cols, dq + q_cols + kv_cols, dout.get(), out.get(), lse.get(), q, k, v,
                           c.ld, s.B, s.T, s.Hq, s.Hkv, s.D, workspace.get(), ws_bytes);
  DYTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  GpuResult r;
  r.out = out.download();
  r.out_bits = out.download_bits();
  r.lse = lse.download();
  r.dqkv = dqkv.download();
  r.dqkv_bits = dqkv.download_bits();
  return r;
}


void check_case(const AttnShape& shape) {
  const AttnCase c(shape);
  cuda::Blas blas(nullptr);
  expect_matches_cpu(c, run_gpu(c, blas));
}


class CudaAttention : public CudaTest, public testing::WithParamInterface<AttnShape> {};

TEST_P(CudaAttention, MatchesCpuOp) { check_case(GetParam()); }

// The brief's shapes: one token; ragged T, Hq, D with rep 2; rep 2 at D 64; Hq = Hkv (no grouping); T = 200 past one
// 128-token chunk with all heads on one kv head; then T = 260 (a 4-token last chunk) and a realistic LLaMA head
// shape, D = 128 with rep 4 over four chunks.
INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention,
                         testing::Values(AttnShape{1, 1, 1, 1, 8}, AttnShape{2, 7, 4, 2, 16},
                                         AttnShape{1, 33, 6, 3, 64}, AttnShape{2, 128, 8, 8, 64},
                                         AttnShape{1, 200, 4, 1, 128}, AttnShape{1, 260, 4, 2, 32},
                                         AttnShape{1, 512, 8, 2, 128}),
                         attn_shape_name);

using CudaAttentionCases = CudaTest;

// Forward and backward twice on the same inputs (one Blas, so the GEMMs' algorithms are the cached ones): every
// output bit-identical.
TEST_F(CudaAttentionCases, RerunsAreBitIdentical) {
  for (const AttnShape& s : {AttnShape{2, 128, 8, 8, 64}, AttnShape{1, 260, 4, 2, 32}}) {
    SCOPED_TRACE(attn_shape_name(testing::TestParamInfo<AttnShape>(s, 0)));
    const AttnCase c(s);
    cuda::Blas blas(nullptr);
    const GpuResult a = run_gpu(c, blas);
    const GpuResult b = run_gpu(c, blas);
    EXPECT_TRUE(a.out_bits == b.out_bits) << "out differs between runs";
    EXPECT_TRUE(a.lse == b.lse) << "lse differs between runs";
    EXPECT_TRUE(a.dqkv_bits == b.dqkv_bits) << "dq, dk or dv differ between runs";
  }
}

// The entry points run check_attention_args before queuing anything.
TEST_F(CudaAttentionCases, EntryPointsRejectBadArguments) {
  const AttnCase c(AttnShape{1, 7, 4, 2, 16});
  const AttnShape& s = c.s;
  cuda::Blas blas(nullptr);
  DeviceBf16 qkv(c.qkv), out(std::vector<float>(c.q.size())), dout(c.dout);
  DeviceBuffer<float> lse(static_cast<size_t>(s.B) * s.Hq * s.T);
  const size_t need = cuda::attention_workspace_bytes(s.B, s.T, s.Hq, s.Hkv, s.D);
  DeviceBuffer<unsigned char> workspace(need);
  const bf16* q = qkv.get();
  EXPECT_THROW(cuda::attention_forward(blas, out.get(), lse.get(), q, q + 64, q + 96, c.ld, s.B, s.T, s.Hq, s.Hkv,
                                       s.D, workspace.get(), need - 1),
               std::invalid_argument);
  bf16* d = qkv.get();
  EXPECT_THROW(cuda::attention_backward(blas, d, d + 64, d + 96, dout.get(), out.get(), lse.get(), q, q + 64, q + 96,
                                        c.ld, s.B, s.T, s.Hq, 3, s.D, workspace.get(), need),
               std::invalid_argument);
}

// These run with or without a GPU: argument checks and workspace sizing make no CUDA call.
const void* addr(uintptr_t a) { return reinterpret_cast<const void*>(a); }

// Calls check_attention_args for attention_backward's tensors, all at stand-in address 256 except `bad_name`,
// which gets `bad_addr`; expects it to throw std::invalid_argument whose message contains `expect` (empty: no throw).
void expect_check(int B, int T, int Hq, int Hkv, int D, int64_t ld, const char* bad_name, uintptr_t bad_addr,
                  const void* workspace, size_t workspace_bytes, const std::string& expect) {
  auto ptr = [&](const char* name) { return addr(std::string(name) == bad_name ? bad_addr : 256); };
  auto call = [&] {
    cuda::check_attention_args("attention_backward", B, T, Hq, Hkv, D, ld,
                               {{"dq", ptr("dq"), 16},
                                {"dk", ptr("dk"), 16},
                                {"dv", ptr("dv"), 16},
                                {"dout", ptr("dout"), 16},
                                {"out", ptr("out"), 16},
                                {"lse", ptr("lse"), 4},
                                {"q", ptr("q"), 16},
                                {"k", ptr("k"), 16},
                                {"v", ptr("v"), 16}},
                               workspace, workspace_bytes);
  };
  if (expect.empty()) {
    EXPECT_NO_THROW(call());
    return;
  }
  try {
    call();
    ADD_FAILURE() << "no exception; expected one naming " << expect;
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(expect), std::string::npos) << what;
    EXPECT_NE(what.find("dytrain::cuda::attention_backward"), std::string::npos) << what;
  }
}

TEST(CudaAttentionArguments, AreCheckedWithoutDeviceWork) {
  const int B = 2, T = 7, Hq = 4, Hkv = 2, D = 16;
  const int64_t ld = (Hq + 2 * Hkv) * D;
  const size_t need = cuda::attention_workspace_bytes(B, T, Hq, Hkv, D);
  const void* ws = addr(4096);
  expect_check(B, T, Hq, Hkv, D, ld, "", 0, ws, need, "");                            // valid
  expect_check(B, T, Hq, Hkv, D, Hq * D, "", 0, ws, need, "");                        // ld = Hq * D is enough
  expect_check(B, T, Hq, 3, D, ld, "", 0, ws, need, "Hkv = 3 does not divide Hq = 4");
  expect_check(B, T, Hq, Hkv, D, Hq * D - 8, "", 0, ws, need, "ld_qkv");              // narrower than a q row
  expect_check(B, T, Hq, Hkv, D, ld + 4, "", 0, ws, need, "ld_qkv");                  // rows off 16-byte boundaries
  expect_check(B, T, Hq, Hkv, 12, ld, "", 0, ws, need, "head dim D = 12");
  expect_check(0, T, Hq, Hkv, D, ld, "", 0, ws, need, "B, T, Hq, Hkv >= 1");
  expect_check(B, 0, Hq, Hkv, D, ld, "", 0, ws, need, "B, T, Hq, Hkv >= 1");
  expect_check(B, T, Hq, Hkv, D, ld, "", 0, ws, need - 1, "attention_workspace_bytes");
  expect_check(B, T, Hq, Hkv, D, ld, "", 0, nullptr, need, "workspace");
  expect_check(B, T, Hq, Hkv, D, ld, "", 0, addr(4104), need, "16-byte aligned");  // workspace off by 8 bytes
  expect_check(B, T, Hq, Hkv, D, ld, "q", 264, ws, need, "q is not 16-byte aligned");
  expect_check(B, T, Hq, Hkv, D, ld, "dv", 0, ws, need, "dv is null");
  expect_check(B, T, Hq, Hkv, D, ld, "lse", 258, ws, need, "lse is not 4-byte aligned");
  expect_check(B, T, Hq, Hkv, D, ld, "lse", 260, ws, need, "");  // fp32 lse needs 4 bytes only
  expect_check(65536, 1024, 32, 8, 128, 32 * 128, "", 0, ws, need, "2^31");
}

TEST(CudaAttentionArguments, WorkspaceIsLinearInT) {
  EXPECT_THROW(cuda::attention_workspace_bytes(1, 64, 6, 4, 64), std::invalid_argument);  // Hkv does not divide Hq
  EXPECT_THROW(cuda::attention_workspace_bytes(1, 64, 8, 2, 4), std::invalid_argument);   // D not a multiple of 8
  // Scores are held for 128 query tokens at a time, so doubling T (past 128) at most doubles the workspace; a
  // workspace holding all T x T scores would grow 4x here (about 3.9x with the T-linear buffers).
  const size_t t2k = cuda::attention_workspace_bytes(2, 2048, 32, 8, 128);
  const size_t t4k = cuda::attention_workspace_bytes(2, 4096, 32, 8, 128);
  EXPECT_LE(t4k, 2 * t2k + 4096);
  // It holds at least the fp32 scores of one chunk: B * Hq * 128 * T floats.
  EXPECT_GE(t2k, size_t{2} * 32 * 128 * 2048 * sizeof(float));
}

}  // namespace
}  // namespace dytrain::test
