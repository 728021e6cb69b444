// The communicator interface: one API, two backends. MPI works on host buffers (CPU runs, CI tests); NCCL works on
// device buffers on its own stream (GPU runs). A single-process run uses the trivial backend, so the model and the
// training loop never ask how many ranks exist. Communicators are passed in, never global.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace dytrain {

enum class ReduceOp { sum, avg, max };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place over n elements.
  virtual void all_reduce(float* buf, int64_t n, ReduceOp op) = 0;
  virtual void all_reduce(double* buf, int64_t n, ReduceOp op) = 0;
  // out (n_per_rank) = this rank's block of the reduction of in (size() * n_per_rank).
  virtual void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) = 0;
  // out (size() * n_per_rank) = every rank's in (n_per_rank), in rank order. in may alias out's own block.
  virtual void all_gather(float* out, const float* in, int64_t n_per_rank) = 0;
  virtual void broadcast(void* buf, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Blocks until every collective issued so far has completed. Host backends finish each call before returning, so
  // for them this is a no-op; the NCCL backend enqueues on its stream and waits here (and surfaces remote errors).
  virtual void synchronize() {}
};

// The backend of a process that runs alone: every collective is the identity (avg of one rank is itself).
std::unique_ptr<Communicator> make_self_communicator();

}  // namespace dytrain
