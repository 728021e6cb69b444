// Waiting is polling: cudaStreamQuery and ncclCommGetAsyncError every 50 us at first, backing off to 1 ms, so a healthy
// synchronize costs microseconds of latency and an idle wait little CPU. An error or the deadline leads to
// ncclCommAbort, which releases the GPU work of this rank; the exception then reaches the trainer (or main()), whose
// abort_job takes the other ranks down through MPI.
#include "parallel/nccl_comm.h"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

#include "parallel/gpu_check.h"
#include "parallel/runtime.h"

// Inside NcclCommunicator, NCCL calls go through finish_call rather than DYTRAIN_CUDA_CHECK: a failed collective must
// also abort the communicator, and ncclInProgress must be waited out before the next call.
#define DYTRAIN_NCCL_CALL(call) finish_call((call), #call, __FILE__, __LINE__)

namespace dytrain {
namespace {

using Clock = std::chrono::steady_clock;

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
  }
  throw std::invalid_argument("NcclCommunicator: unknown ReduceOp");
}

// Backs off from 50 us to 1 ms between polls.
class Poller {
 public:
  void pause() {
    std::this_thread::sleep_for(delay_);
    if (delay_ < std::chrono::microseconds(1000)) delay_ *= 2;
  }

 private:
  std::chrono::microseconds delay_{50};
};

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device, std::chrono::milliseconds timeout)
    : rank_(bootstrap.rank()), size_(bootstrap.size()), device_(device), timeout_(timeout) {
  DYTRAIN_CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId id{};
  if (rank_ == 0) DYTRAIN_CUDA_CHECK(ncclGetUniqueId(&id));
  bootstrap.broadcast(&id, sizeof(id), 0);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  DYTRAIN_CUDA_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config));
  try {
    wait_ready("ncclCommInitRankConfig");
    DYTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DYTRAIN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&barrier_scratch_), sizeof(float)));
  } catch (...) {
    if (!aborted_) ncclCommAbort(comm_);
    if (stream_) cudaStreamDestroy(stream_);
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  // Destroyed by an exception on its way up (an error path), the communicator may hold collectives its peers never
  // matched: ncclCommFinalize would poll for them up to the timeout, so it is aborted at once, which also ends its
  // kernels (a CUDA free after it cannot wait on one). A destructor must not throw: teardown problems are reported and
  // the communicator is aborted instead.
  if (comm_ && !aborted_ && std::uncaught_exceptions() > 0) {
    ncclCommAbort(comm_);
    aborted_ = true;
  }
  if (comm_ && !aborted_) {
    ncclResult_t state = ncclCommFinalize(comm_);
    const auto deadline = Clock::now() + timeout_;
    Poller poller;
    while (state == ncclSuccess || state == ncclInProgress) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess || state != ncclInProgress) break;
      if (Clock::now() > deadline) break;
      poller.pause();
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      std::fprintf(stderr, "%s: NCCL communicator finalize failed (%s); aborting it\n", process_label().c_str(),
                   ncclGetErrorString(state));
      ncclCommAbort(comm_);
    }
  }
  if (barrier_scratch_) cudaFree(barrier_scratch_);
  if (stream_) cudaStreamDestroy(stream_);
}

void NcclCommunicator::abort_and_throw(const std::string& what) {
  if (!aborted_) {
    ncclCommAbort(comm_);
    aborted_ = true;
  }
  throw std::runtime_error(process_label() + ": NcclCommunicator (rank " + std::to_string(rank_) + " of " +
                           std::to_string(size_) + ", device " + std::to_string(device_) + "): " + what +
                           "; the communicator was aborted. HINT: NCCL_DEBUG=WARN shows NCCL's view; a remote error "
                           "usually means another rank failed first, look for its message.");
}

ncclResult_t NcclCommunicator::async_state() {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
  if (query != ncclSuccess) abort_and_throw(std::string("ncclCommGetAsyncError failed: ") + ncclGetErrorString(query));
  return state;
}

void NcclCommunicator::wait_ready(const char* what) {
  const auto deadline = Clock::now() + timeout_;
  Poller poller;
  for (;;) {
    const ncclResult_t state = async_state();
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      abort_and_throw(std::string(what) + " failed: " + ncclGetErrorString(state) + " (" + ncclGetLastError(comm_) +
                      ")");
    }
    if (Clock::now() > deadline) {
      abort_and_throw(std::string(what) + " still in progress after " + std::to_string(timeout_.count()) + " ms");
    }
    poller.pause();
  }
}

void NcclCommunicator::finish_call(ncclResult_t status, const char* statement, const char* file, int line) {
  if (aborted_) abort_and_throw(std::string("used after an earlier error: ") + statement);
  if (status == ncclInProgress) {
    wait_ready(statement);
  } else if (status != ncclSuccess) {
    abort_and_throw(std::string(statement) + " returned " + ncclGetErrorString(status) + " (" +
                    ncclGetLastError(comm_) + ") at " + file + ":" + std::to_string(line));
  }
}

void NcclCommunicator::all_reduce(float* buf, int64_t n, ReduceOp op) {
  DYTRAIN_NCCL_CALL(ncclAllReduce(buf, buf, static_cast<size_t>(n), ncclFloat32, nccl_op(op), comm_, stream_));
}

void NcclCommunicator::all_reduce(double* buf, int64_t n, ReduceOp op) {
  DYTRAIN_NCCL_CALL(ncclAllReduce(buf, buf, static_cast<size_t>(n), ncclFloat64, nccl_op(op), comm_, stream_));
}

void NcclCommunicator::all_reduce_sum_bf16(__nv_bfloat16* buf, int64_t n) {
  DYTRAIN_NCCL_CALL(ncclAllReduce(buf, buf, static_cast<size_t>(n), ncclBfloat16, ncclSum, comm_, stream_));
}

void NcclCommunicator::reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) {
  DYTRAIN_NCCL_CALL(
      ncclReduceScatter(in, out, static_cast<size_t>(n_per_rank), ncclFloat32, nccl_op(op), comm_, stream_));
}

void NcclCommunicator::all_gather(float* out, const float* in, int64_t n_per_rank) {
  // NCCL treats in == out + rank * n_per_rank as in place, matching the interface's contract.
  DYTRAIN_NCCL_CALL(ncclAllGather(in, out, static_cast<size_t>(n_per_rank), ncclFloat32, comm_, stream_));
}

void NcclCommunicator::broadcast(void* buf, int64_t bytes, int root) {
  if (root < 0 || root >= size_) {
    throw std::invalid_argument(process_label() + ": NcclCommunicator::broadcast: root " + std::to_string(root) +
                                " is not a rank of this communicator (size " + std::to_string(size_) + ")");
  }
  DYTRAIN_NCCL_CALL(ncclBroadcast(buf, buf, static_cast<size_t>(bytes), ncclUint8, root, comm_, stream_));
}

void NcclCommunicator::barrier() {
  all_reduce(barrier_scratch_, 1, ReduceOp::sum);
  synchronize();
}

void NcclCommunicator::synchronize() {
  if (aborted_) abort_and_throw("synchronize after an earlier error");
  const auto deadline = Clock::now() + timeout_;
  Poller poller;
  for (;;) {
    const cudaError_t done = cudaStreamQuery(stream_);
    if (done == cudaSuccess) break;
    if (done != cudaErrorNotReady) {
      abort_and_throw(std::string("the stream failed: ") + cudaGetErrorName(done) + " (" + cudaGetErrorString(done) +
                      ")");
    }
    const ncclResult_t state = async_state();
    if (state != ncclSuccess && state != ncclInProgress) {
      abort_and_throw(std::string("asynchronous NCCL error ") + ncclGetErrorString(state) + " (" +
                      ncclGetLastError(comm_) + ")");
    }
    if (Clock::now() > deadline) {
      abort_and_throw("collectives still running after " + std::to_string(timeout_.count()) +
                      " ms (a peer rank is stuck or gone)");
    }
    poller.pause();
  }
  // A collective can also fail after its kernels drained (a remote error noticed late).
  wait_ready("synchronize");
}

std::unique_ptr<NcclCommunicator> make_nccl_communicator(Communicator& bootstrap, int device,
                                                          std::chrono::milliseconds timeout) {
  return std::make_unique<NcclCommunicator>(bootstrap, device, timeout);
}

}  // namespace dytrain
