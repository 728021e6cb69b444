#include "trainer/train/flops.h"

namespace dytrain {

double training_flops_per_token(const ModelConfig& m, int64_t parameters, int seq_len) {
  const double non_embedding = double(parameters) - double(m.vocab_size) * m.dim;
  return 6.0 * non_embedding + 12.0 * m.n_layers * double(m.dim) * seq_len;
}

std::optional<double> device_peak_flops(const TrainConfig& t, const std::string& device) {
  if (t.peak_tflops > 0) return t.peak_tflops * 1e12;
  if (device == "cuda") return kH100PeakBf16Flops;
  return std::nullopt;
}

}  // namespace dytrain
