// The one-process backend. With one rank every reduction (sum, avg, max) of a buffer is the buffer itself, a
// reduce-scatter or all-gather is a copy of the only block, and broadcast and barrier have nothing to do.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "parallel/comm.h"

namespace dytrain {
namespace {

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce(float*, int64_t, ReduceOp) override {}
  void all_reduce(double*, int64_t, ReduceOp) override {}
  void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp) override {
    copy_block(out, in, n_per_rank);
  }
  void all_gather(float* out, const float* in, int64_t n_per_rank) override { copy_block(out, in, n_per_rank); }
  void broadcast(void*, int64_t, int root) override {
    if (root != 0) {
      throw std::invalid_argument("SelfCommunicator::broadcast: root " + std::to_string(root) +
                                  " does not exist in a one-process run (only rank 0)");
    }
  }
  void barrier() override {}

 private:
  static void copy_block(float* out, const float* in, int64_t n) {
    if (out != in) std::copy_n(in, n, out);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

}  // namespace dytrain
