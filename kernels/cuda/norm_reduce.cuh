// Second stage of the norm kernels' deterministic reductions: the per-block partials the first stage left in the
// workspace are summed in block order, in fp64, and added (+=) to the outputs, each rounded once, the way the CPU ops
// add their row-block partials (kernels/cpu/row_blocks.h). Internal to kernels/cuda.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cpu/dyt.h"  // SiteMoments

namespace dytrain::cuda::detail {

// moments (device) += the sums of partials (G, 3) = (sum, sum_sq, saturated) per block; moments->count += count.
void finalize_moments(cpu::SiteMoments* moments, const double* partials, int G, int64_t count, cudaStream_t stream);

// out_a (C) += the column sums of part_a (G, C); out_b likewise when not null; *out_scalar += the sum of
// part_scalar (G) when not null.
void finalize_param_grads(float* out_a, const float* part_a, float* out_b, const float* part_b, float* out_scalar,
                          const float* part_scalar, int G, int C, cudaStream_t stream);

}  // namespace dytrain::cuda::detail
