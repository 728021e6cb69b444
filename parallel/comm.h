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
  // Starts an in-place all-reduce that may still be running when this returns: buf must not be touched until
  // synchronize() returns. Lets gradient reductions run behind the backward pass. Backends that cannot run a
  // collective in the background finish it here (the default).
  virtual void all_reduce_start(float* buf, int64_t n, ReduceOp op) { all_reduce(buf, n, op); }
  // out (n_per_rank) = this rank's block of the reduction of in (size() * n_per_rank). The device backends
  // (device_comm.h) also take out == in + rank() * n_per_rank, in place.
  virtual void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) = 0;
  // out (size() * n_per_rank) = every rank's in (n_per_rank), in rank order. in may alias out's own block.
  virtual void all_gather(float* out, const float* in, int64_t n_per_rank) = 0;
  virtual void broadcast(void* buf, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Blocks until every collective issued so far has completed: the NCCL backend's (it enqueues every call on its
  // stream, and surfaces remote errors here) and the MPI backend's all_reduce_start; otherwise host calls have
  // completed when they return.
  virtual void synchronize() {}
};

// The backend of a process that runs alone: every collective is the identity (avg of one rank is itself).
std::unique_ptr<Communicator> make_self_communicator();

}  // namespace dytrain
