// A fake asynchronous communicator for tests: all_reduce_start returns at once and runs the reduction late, at
// synchronize(), as a device backend's stream may. Between the two the buffer holds NaN, so code that reads a range
// it has handed to an all-reduce sees poison, and a write into it is overwritten by the late result: either way the
// outcome differs from the blocking reduction, bit for bit. Every other call goes straight to the wrapped backend.
// This tests the order of the gradient hooks (trainer/train/grad_sync.h) on one machine without two GPUs.
#pragma once
#include <cstring>
#include <limits>
#include <vector>

#include "parallel/comm.h"

namespace dytrain::testing {

class LateCommunicator final : public Communicator {
 public:
  explicit LateCommunicator(Communicator& inner) : inner_(inner) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void all_reduce(float* buf, int64_t n, ReduceOp op) override { inner_.all_reduce(buf, n, op); }
  void all_reduce(double* buf, int64_t n, ReduceOp op) override { inner_.all_reduce(buf, n, op); }
  void all_reduce_start(float* buf, int64_t n, ReduceOp op) override {
    pending_.push_back({buf, std::vector<float>(buf, buf + n), op});
    std::fill(buf, buf + n, std::numeric_limits<float>::quiet_NaN());
  }
  void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) override {
    inner_.reduce_scatter(out, in, n_per_rank, op);
  }
  void all_gather(float* out, const float* in, int64_t n_per_rank) override { inner_.all_gather(out, in, n_per_rank); }
  void broadcast(void* buf, int64_t bytes, int root) override { inner_.broadcast(buf, bytes, root); }
  void barrier() override { inner_.barrier(); }
  void synchronize() override {
    for (Pending& p : pending_) {
      inner_.all_reduce(p.values.data(), int64_t(p.values.size()), p.op);
      std::memcpy(p.buf, p.values.data(), p.values.size() * sizeof(float));
    }
    pending_.clear();
    inner_.synchronize();
  }
  int64_t started() const { return int64_t(pending_.size()); }

 private:
  struct Pending {
    float* buf;
    std::vector<float> values;  // the buffer as handed over
    ReduceOp op;
  };
  Communicator& inner_;
  std::vector<Pending> pending_;
};

}  // namespace dytrain::testing
