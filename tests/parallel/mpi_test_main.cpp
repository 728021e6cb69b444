// main() of the test binaries that run under mpirun. MPI comes up before GoogleTest and goes down after it
// (ProcessRuntime). Rank 0 prints GoogleTest's usual report; the other ranks print only their failures, each line
// prefixed with "rank R on HOST", so a failure on one rank is visible without four interleaved copies of the report.
// Every rank runs every test in the same order, so the collectives inside the tests match up.
#include <gtest/gtest.h>

#include <cstdio>

#include "parallel/runtime.h"

namespace {

class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "%s: FAILED %s:%d\n%s\n", dytrain::process_label().c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(), result.message());
  }
};

}  // namespace

int main(int argc, char** argv) {
  dytrain::ProcessRuntime runtime(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  if (!dytrain::is_root()) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter);
  }
  return RUN_ALL_TESTS();
}
