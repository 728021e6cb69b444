// The CUDA engine's AdamW segment table against the parameter table it describes, for every rank of several ZeRO-1
// splits: the kernel's validation accepts it (sorted, disjoint, covering the range exactly), and every tensor's
// elements inside the range get its own group's lr (times the schedule factor), beta2 and weight decay. Host code:
// runs everywhere.
#include <gtest/gtest.h>

#include "tests/trainer/model/model_test_util.h"
#include "trainer/model/layout.h"
#include "trainer/optim/adamw.h"
#include "trainer/train/adamw_segments.h"

namespace dytrain {
namespace {

const cuda::AdamWSegment& segment_at(const std::vector<cuda::AdamWSegment>& segs, int64_t i) {
  for (const cuda::AdamWSegment& s : segs)
    if (s.begin <= i && i < s.end) return s;
  ADD_FAILURE() << "no segment holds element " << i;
  return segs.front();
}

TEST(AdamWSegments, EveryRangeCarriesEachTensorsGroupSettings) {
  const LlamaLayout layout(testing::tiny_model(NormKind::dyt, /*bias=*/true, /*tie=*/false, 2), 0, 1);
  OptimConfig opt;
  opt.weight_decay = 0.1;
  opt.matrices.weight_decay = true;
  opt.dyt_alpha.lr = 3e-3;  // every group distinguishable: lr, beta2 or weight decay
  opt.dyt_gamma_beta.beta2 = 0.99;
  opt.embed_scale.lr = 1e-2;
  const double lr_factor = 0.25;
  const ParamTable& table = layout.table;
  for (int parts : {1, 2, 3, 7}) {
    for (int rank = 0; rank < parts; ++rank) {
      const ShardRange range = shard_range(table.total(), parts, rank);
      const std::vector<cuda::AdamWSegment> segs = adamw_segments(table, opt, lr_factor, range);
      SCOPED_TRACE("rank " + std::to_string(rank) + " of " + std::to_string(parts));
      EXPECT_NO_THROW(cuda::validate_adamw_segments(segs, range.end - range.begin));
      EXPECT_LE(segs.size(), table.specs().size());
      for (const ParamSpec& spec : table.specs()) {
        const GroupHyper h = group_hyper(opt, spec.group);
        for (int64_t i : {spec.offset, spec.offset + spec.numel - 1}) {
          if (i < range.begin || i >= range.end) continue;
          const cuda::AdamWSegment& s = segment_at(segs, i - range.begin);
          EXPECT_EQ(s.lr, float(h.lr * lr_factor)) << spec.name;
          EXPECT_EQ(s.beta2, float(h.beta2)) << spec.name;
          EXPECT_EQ(s.weight_decay, float(h.weight_decay)) << spec.name;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dytrain
