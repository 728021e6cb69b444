// The parameter table: every trainable tensor of the model, by its Hugging Face LLaMA name, laid out in one
// contiguous fp32 buffer. One buffer makes AdamW one loop, the grad norm one reduction, a data-parallel
// all-reduce one call, and a checkpoint a walk over the table.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dytrain {

// Optimizer parameter groups; each has its own weight-decay switch and optional lr / beta2 (OptimConfig).
enum class ParamGroup { matrices, embeddings, dyt_alpha, dyt_gamma_beta, embed_scale };
const char* to_string(ParamGroup g);

struct ParamSpec {
  std::string name;            // HF name, e.g. model.layers.3.self_attn.q_proj.weight
  std::vector<int64_t> shape;  // linear weights (out_features, in_features); scalars [1]
  ParamGroup group;
  int64_t offset = 0;          // first element in the flat buffer
  int64_t numel = 0;
};

class ParamTable {
 public:
  // Appends a tensor and returns its offset. Names must be unique.
  int64_t add(const std::string& name, std::vector<int64_t> shape, ParamGroup group);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  const ParamSpec& at(const std::string& name) const;  // throws std::out_of_range naming the tensor
  const ParamSpec* find(const std::string& name) const;  // nullptr when absent
  int64_t total() const { return total_; }

 private:
  std::vector<ParamSpec> specs_;
  int64_t total_ = 0;
};

}  // namespace dytrain
