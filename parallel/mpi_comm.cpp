// avg is a sum followed by a division on every rank: MPI has no average, and dividing after the reduction keeps all
// ranks bit-identical (each divides the same sum by the same size). all_reduce and broadcast go in chunks of at most
// max_message_count elements because MPI counts are int; reduce_scatter and all_gather would need a chunk of every
// rank's block per call, and more than INT_MAX floats per rank (8 GiB) is far beyond any host buffer we exchange, so
// they refuse such sizes with a clear error instead.
#include "parallel/mpi_comm.h"

#include <stdexcept>
#include <string>

#include "parallel/chunks.h"
#include "parallel/mpi_check.h"
#include "parallel/runtime.h"

namespace dytrain {
namespace {

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::max ? MPI_MAX : MPI_SUM; }

void check_count(int64_t n, const char* what) {
  if (n < 0 || n > INT_MAX) {
    throw std::invalid_argument(process_label() + ": MpiCommunicator::" + what + " got " + std::to_string(n) +
                                " elements per rank; it supports 0 .. INT_MAX (split the buffer)");
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, int64_t max_message_count) : max_message_count_(max_message_count) {
  if (max_message_count < 1 || max_message_count > INT_MAX) {
    throw std::invalid_argument("MpiCommunicator: max_message_count = " + std::to_string(max_message_count) +
                                " must be in 1 .. INT_MAX");
  }
  DYTRAIN_MPI_CHECK(MPI_Comm_dup(parent, &comm_));
  DYTRAIN_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  DYTRAIN_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  DYTRAIN_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  // Freeing after MPI_Finalize is an error; the runtime outliving the mesh is documented, this guards teardown order
  // on an exception path.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

template <typename T>
void MpiCommunicator::all_reduce_impl(T* buf, int64_t n, ReduceOp op, MPI_Datatype type) {
  for (const Chunk& c : split_into_chunks(n, max_message_count_)) {
    DYTRAIN_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + c.offset, c.count, type, mpi_op(op), comm_));
  }
  if (op == ReduceOp::avg) {
    const T denom = static_cast<T>(size_);
    for (int64_t i = 0; i < n; ++i) buf[i] /= denom;
  }
}

void MpiCommunicator::all_reduce(float* buf, int64_t n, ReduceOp op) { all_reduce_impl(buf, n, op, MPI_FLOAT); }

void MpiCommunicator::all_reduce(double* buf, int64_t n, ReduceOp op) { all_reduce_impl(buf, n, op, MPI_DOUBLE); }

// Open MPI progresses non-blocking collectives inside MPI calls, so on a CPU run the reduction mostly happens in
// synchronize(); the interface is the same as NCCL's, where it truly runs behind the backward pass.
void MpiCommunicator::all_reduce_start(float* buf, int64_t n, ReduceOp op) {
  for (const Chunk& c : split_into_chunks(n, max_message_count_)) {
    MPI_Request request = MPI_REQUEST_NULL;
    DYTRAIN_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + c.offset, c.count, MPI_FLOAT, mpi_op(op), comm_, &request));
    pending_.push_back(request);
  }
  if (op == ReduceOp::avg) pending_avg_.push_back({buf, n});
}

void MpiCommunicator::synchronize() {
  if (!pending_.empty())
    DYTRAIN_MPI_CHECK(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE));
  pending_.clear();
  const float denom = static_cast<float>(size_);
  for (const PendingAvg& p : pending_avg_)
    for (int64_t i = 0; i < p.n; ++i) p.buf[i] /= denom;
  pending_avg_.clear();
}

void MpiCommunicator::reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) {
  check_count(n_per_rank, "reduce_scatter");
  DYTRAIN_MPI_CHECK(
      MPI_Reduce_scatter_block(in, out, static_cast<int>(n_per_rank), MPI_FLOAT, mpi_op(op), comm_));
  if (op == ReduceOp::avg) {
    const float denom = static_cast<float>(size_);
    for (int64_t i = 0; i < n_per_rank; ++i) out[i] /= denom;
  }
}

void MpiCommunicator::all_gather(float* out, const float* in, int64_t n_per_rank) {
  check_count(n_per_rank, "all_gather");
  float* own_block = out + static_cast<int64_t>(rank_) * n_per_rank;
  const bool in_place = in == own_block;
  if (!in_place && in < out + size_ * n_per_rank && out < in + n_per_rank) {
    throw std::invalid_argument(process_label() +
                                ": MpiCommunicator::all_gather: in overlaps out but is not this rank's block; pass "
                                "out + rank() * n_per_rank for an in-place gather, or a separate buffer");
  }
  const int count = static_cast<int>(n_per_rank);
  DYTRAIN_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : in, count, MPI_FLOAT, out, count, MPI_FLOAT, comm_));
}

void MpiCommunicator::broadcast(void* buf, int64_t bytes, int root) {
  if (root < 0 || root >= size_) {
    throw std::invalid_argument(process_label() + ": MpiCommunicator::broadcast: root " + std::to_string(root) +
                                " is not a rank of this communicator (size " + std::to_string(size_) + ")");
  }
  char* base = static_cast<char*>(buf);
  for (const Chunk& c : split_into_chunks(bytes, max_message_count_)) {
    DYTRAIN_MPI_CHECK(MPI_Bcast(base + c.offset, c.count, MPI_BYTE, root, comm_));
  }
}

void MpiCommunicator::barrier() { DYTRAIN_MPI_CHECK(MPI_Barrier(comm_)); }

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key) const {
  MPI_Comm part = MPI_COMM_NULL;
  DYTRAIN_MPI_CHECK(MPI_Comm_split(comm_, color, key, &part));
  // The constructor duplicates; the intermediate split is freed here so each communicator has one owner.
  std::unique_ptr<MpiCommunicator> result;
  try {
    result = std::make_unique<MpiCommunicator>(part, max_message_count_);
  } catch (...) {
    MPI_Comm_free(&part);
    throw;
  }
  DYTRAIN_MPI_CHECK(MPI_Comm_free(&part));
  return result;
}

}  // namespace dytrain
