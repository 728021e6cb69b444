#include "trainer/train/adamw_segments.h"

#include <algorithm>

#include "trainer/optim/adamw.h"

namespace dytrain {

std::vector<cuda::AdamWSegment> adamw_segments(const ParamTable& table, const OptimConfig& opt, double lr_factor,
                                               const ShardRange& range) {
  std::vector<cuda::AdamWSegment> segs;
  const std::vector<ParamSpec>& specs = table.specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const GroupHyper h = group_hyper(opt, specs[i].group);
    const int64_t begin = std::max(i == 0 ? 0 : specs[i].offset, range.begin);
    const int64_t end = std::min(i + 1 < specs.size() ? specs[i + 1].offset : table.total(), range.end);
    if (begin >= end) continue;
    const cuda::AdamWSegment s{begin - range.begin, end - range.begin, float(h.lr * lr_factor), float(h.beta2),
                               float(h.weight_decay)};
    if (!segs.empty() && segs.back().lr == s.lr && segs.back().beta2 == s.beta2 &&
        segs.back().weight_decay == s.weight_decay)
      segs.back().end = s.end;
    else
      segs.push_back(s);
  }
  return segs;
}

}  // namespace dytrain
