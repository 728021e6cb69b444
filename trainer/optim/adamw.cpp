#include "trainer/optim/adamw.h"

#include <algorithm>

#include "kernels/cpu/adamw.h"

namespace dytrain {

GroupHyper group_hyper(const OptimConfig& opt, ParamGroup g) {
  const GroupConfig* gc = nullptr;
  switch (g) {
    case ParamGroup::matrices: gc = &opt.matrices; break;
    case ParamGroup::embeddings: gc = &opt.embeddings; break;
    case ParamGroup::dyt_alpha: gc = &opt.dyt_alpha; break;
    case ParamGroup::dyt_gamma_beta: gc = &opt.dyt_gamma_beta; break;
    case ParamGroup::embed_scale: gc = &opt.embed_scale; break;
  }
  return GroupHyper{gc->lr.value_or(opt.lr), gc->beta2.value_or(opt.beta2), gc->weight_decay ? opt.weight_decay : 0.0};
}

AdamW::AdamW(const OptimConfig& opt, const ParamTable& table, int64_t begin, int64_t end)
    : opt_(opt), table_(table), begin_(begin), end_(end < 0 ? table.total() : end) {
  m_.assign(end_ - begin_, 0.0f);
  v_.assign(end_ - begin_, 0.0f);
}

void AdamW::step(float* params, const float* grads, double lr_factor, float grad_scale) {
  ++t_;
  for (const ParamSpec& s : table_.specs()) {
    const int64_t lo = std::max(begin_, s.offset), hi = std::min(end_, s.offset + s.numel);
    if (lo >= hi) continue;
    const GroupHyper h = group_hyper(opt_, s.group);
    cpu::AdamWStep st;
    st.lr = float(h.lr * lr_factor);
    st.beta1 = float(opt_.beta1);
    st.beta2 = float(h.beta2);
    st.eps = float(opt_.eps);
    st.weight_decay = float(h.weight_decay);
    st.grad_scale = grad_scale;
    st.t = t_;
    const int64_t r = lo - begin_;
    cpu::adamw_update(params + lo, m_.data() + r, v_.data() + r, grads + r, hi - lo, st);
  }
}

float clip_scale(double grad_norm, double max_norm) {
  if (max_norm <= 0.0 || grad_norm <= max_norm) return 1.0f;
  return float(max_norm / (grad_norm + 1e-6));
}

}  // namespace dytrain
