// Binary search over the generated codepoint ranges (see unicode_class.h).
#include "trainer/tokenizer/unicode_class.h"

namespace dytrain {

CharClass classify_non_ascii(uint32_t cp) {
  int lo = 0, hi = kNumCodepointRanges;  // answer is in [lo, hi)
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (kCodepointRanges[mid].last < cp) {
      lo = mid + 1;
    } else if (kCodepointRanges[mid].first > cp) {
      hi = mid;
    } else {
      return kCodepointRanges[mid].cls;
    }
  }
  return CharClass::kOther;
}

}  // namespace dytrain
