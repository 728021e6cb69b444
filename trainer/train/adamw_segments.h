// The CUDA engine's AdamW segment table (kernels/cuda/adamw.cuh) for a range of the flat parameter buffer: the host
// side of the fused update, kept apart from the engine so it is tested on machines without a GPU.
#pragma once
#include <vector>

#include "kernels/cuda/adamw.cuh"
#include "trainer/config/config.h"
#include "trainer/model/params.h"
#include "trainer/train/grad_sync.h"

namespace dytrain {

// The segments of [range.begin, range.end) of the flat buffer, shifted to start at 0 (the range is what a rank's
// optimizer updates: everything, or its ZeRO-1 block): one per run of tensors sharing a group's settings (lr times
// lr_factor, beta2, weight decay), each tensor running up to the next one's offset so the alignment gaps are covered
// (they hold zeros that stay zero). At most one segment per tensor of the table.
std::vector<cuda::AdamWSegment> adamw_segments(const ParamTable& table, const OptimConfig& opt, double lr_factor,
                                               const ShardRange& range);

}  // namespace dytrain
