// NCCL's ring all-reduce of bf16 buffers, emulated on the host, so that tests on one GPU (the staged device backend,
// device_comm.h) and on no GPU see the roundings a multi-GPU run will see.
//
// NCCL sums bf16 one addition at a time and rounds each partial sum to bf16 (round to nearest even). Its ring
// reduce-scatter splits the buffer into one chunk per rank; chunk c starts at rank c + 1, travels the ring
// c + 1, c + 2, ..., gaining one rank's values per hop, and ends complete at rank c, which passes it around unchanged
// (the all-gather half). So chunk c is
//   round(... round(round(v[c+1] + v[c+2]) + v[c+3]) ... + v[c])      (rank indices mod n)
// and every rank receives the same bits. The emulation uses the ring 0 -> 1 -> ... -> n-1 -> 0 and one contiguous
// chunk per rank. Real NCCL may order the ring by topology, run several channels that each take a slice of the buffer
// in rank-sized chunks, or pick a tree; each element still sees between 1 and n-1 roundings of its running sum, so
// the emulation reproduces the statistics of a real run, not its exact bits.
//
// One bf16 addition: the two bf16 operands are added in fp32 and the result rounded to bf16. That equals rounding
// the exact sum once (what NCCL's bf16 add does): operands whose exponents differ by at most 15 add exactly in fp32's
// 24 bits, and beyond that the smaller one is below a quarter of the larger one's bf16 spacing, so both give the
// larger one.
#pragma once
#include <cstdint>

namespace dytrain {

// f rounded to the nearest bf16, ties to even, returned as a float (exact: its low 16 bits are zero). NaN stays NaN;
// a finite value past bf16's largest rounds to infinity, as __float2bfloat16_rn does.
float round_to_bf16(float f);

// out (n) = the ring sum above of in (ranks, n): row r is rank r's buffer, every value a bf16 held in a float
// (round_to_bf16(v) == v); out must not overlap in. ranks >= 1 (std::invalid_argument otherwise); one rank copies.
// Chunk c covers [c * ceil(n / ranks), (c + 1) * ceil(n / ranks)) clipped to [0, n): when ranks does not divide n
// the last chunks are shorter or empty, as in NCCL's split.
void bf16_ring_sum(float* out, const float* in, int ranks, int64_t n);

}  // namespace dytrain
