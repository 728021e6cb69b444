// The MPI backend: collectives on host buffers, blocking (each call has completed when it returns). Each
// MpiCommunicator owns a duplicate of the communicator it wraps, so its traffic can never match a message of other
// code on the same ranks, and errors return to DYTRAIN_MPI_CHECK (MPI_ERRORS_RETURN) instead of killing the process.
#pragma once
#include <mpi.h>

#include <climits>
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/comm.h"

namespace dytrain {

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `parent`. max_message_count caps the element count of one MPI call (large buffers go in chunks); the
  // tests lower it to exercise the chunking on small buffers.
  explicit MpiCommunicator(MPI_Comm parent, int64_t max_message_count = INT_MAX);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce(float* buf, int64_t n, ReduceOp op) override;
  void all_reduce(double* buf, int64_t n, ReduceOp op) override;
  // MPI_Iallreduce; an avg divides when synchronize() has the sums.
  void all_reduce_start(float* buf, int64_t n, ReduceOp op) override;
  void synchronize() override;
  void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) override;
  void all_gather(float* out, const float* in, int64_t n_per_rank) override;
  void broadcast(void* buf, int64_t bytes, int root) override;
  void barrier() override;

  // Ranks with the same color form one new communicator, ordered by key (MPI_Comm_split). Collective over this one.
  std::unique_ptr<MpiCommunicator> split(int color, int key) const;
  MPI_Comm comm() const { return comm_; }

 private:
  template <typename T>
  void all_reduce_impl(T* buf, int64_t n, ReduceOp op, MPI_Datatype type);

  struct PendingAvg {
    float* buf;
    int64_t n;
  };
  std::vector<MPI_Request> pending_;       // all_reduce_start's requests, completed by synchronize()
  std::vector<PendingAvg> pending_avg_;    // ranges synchronize() divides by size()
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int64_t max_message_count_;
};

}  // namespace dytrain
