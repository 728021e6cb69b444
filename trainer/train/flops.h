// Model FLOPs per trained token and the device peak they are measured against, for MFU.
//
// The count is the one ../shared/bench/torch_llama_dyt.py uses, so MFU figures compare across the two: 6 x the
// parameters other than the input embedding (one multiply-add per parameter and token forward, two backward;
// the embedding lookup is no matmul) + 12 x layers x dim x seq_len for the attention scores and their use on the
// values (2 matmuls x 2 FLOPs x 3 for forward and backward, causal masking not discounted).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "trainer/config/config.h"

namespace dytrain {

constexpr double kH100PeakBf16Flops = 989e12;  // H100 SXM, dense bf16 tensor cores

// parameters: the whole model's count (every tp rank's tensors once).
double training_flops_per_token(const ModelConfig& m, int64_t parameters, int seq_len);

// One device's peak FLOP/s: train.peak_tflops when set, else the H100's dense bf16 peak on cuda; none on cpu,
// where no meaningful peak exists and MFU is not reported.
std::optional<double> device_peak_flops(const TrainConfig& t, const std::string& device);

}  // namespace dytrain
