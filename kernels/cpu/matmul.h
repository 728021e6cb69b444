// Linear layers without bias, in the nn.Linear convention: weight is (out_features, in_features).
#pragma once
#include <cstdint>

namespace dytrain::cpu {

// out (M, N) = inp (M, K) @ weight^T, weight (N, K). Overwrites out.
void matmul_forward(float* out, const float* inp, const float* weight, int64_t M, int64_t K, int64_t N);

// dinp (M, K) += dout (M, N) @ weight; dweight (N, K) += dout^T @ inp. Either output may be nullptr (skipped).
void matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight, int64_t M,
                     int64_t K, int64_t N);

}  // namespace dytrain::cpu
