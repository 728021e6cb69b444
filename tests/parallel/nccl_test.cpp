// The NCCL backend on one GPU and one rank (bootstrapped over the self communicator, no MPI needed): each collective on
// device buffers, compared with the one-rank result (a reduction of one rank is its input, a gather or scatter a
// copy). This checks the plumbing (types, counts, in-place gather, stream ordering, synchronize); multi-rank NCCL
// numerics are NCCL's own. Skips with a message on a machine without a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "parallel/comm.h"
#include "parallel/gpu_check.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "parallel/nccl_comm.h"

namespace dytrain {
namespace {

bool have_cuda_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

using test::DeviceBuffer;

class NcclOneRank : public testing::Test {
 protected:
  void SetUp() override {
    if (!have_cuda_device()) GTEST_SKIP() << "no CUDA device: the NCCL backend is built but cannot run here";
    bootstrap_ = make_self_communicator();
    comm_ = make_nccl_communicator(*bootstrap_, /*device=*/0);
  }
  std::unique_ptr<Communicator> bootstrap_;
  std::unique_ptr<NcclCommunicator> comm_;
};

std::vector<float> ramp(int64_t n, float start) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + 0.5f * static_cast<float>(i);
  return v;
}

TEST_F(NcclOneRank, RankAndSize) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->size(), 1);
}

TEST_F(NcclOneRank, AllReduceIsTheInputForEveryOp) {
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
    const std::vector<float> host = ramp(1000, -3.0f);
    DeviceBuffer<float> buf(host);
    comm_->all_reduce(buf.get(), 1000, op);
    comm_->synchronize();
    EXPECT_EQ(buf.download(), host) << "op " << static_cast<int>(op);
  }
  const std::vector<double> host_d = {1.0, -2.5, 1e300};
  DeviceBuffer<double> buf_d(host_d);
  comm_->all_reduce(buf_d.get(), 3, ReduceOp::avg);
  comm_->synchronize();
  EXPECT_EQ(buf_d.download(), host_d);
}

TEST_F(NcclOneRank, ReduceScatterCopiesTheOnlyBlock) {
  const std::vector<float> host = ramp(333, 1.0f);
  DeviceBuffer<float> in(host), out(std::vector<float>(333, 0.0f));
  comm_->reduce_scatter(out.get(), in.get(), 333, ReduceOp::avg);
  comm_->synchronize();
  EXPECT_EQ(out.download(), host);
}

TEST_F(NcclOneRank, AllGatherCopiesAndRunsInPlace) {
  const std::vector<float> host = ramp(17, 2.0f);
  DeviceBuffer<float> in(host), out(std::vector<float>(17, 0.0f));
  comm_->all_gather(out.get(), in.get(), 17);
  comm_->all_gather(in.get(), in.get(), 17);  // in place: rank 0's block is the whole output
  comm_->synchronize();
  EXPECT_EQ(out.download(), host);
  EXPECT_EQ(in.download(), host);
}

TEST_F(NcclOneRank, BroadcastKeepsTheBytesAndBarrierReturns) {
  std::vector<uint8_t> host(4097);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<uint8_t>(i * 37 % 256);
  DeviceBuffer<uint8_t> buf(host);
  comm_->broadcast(buf.get(), static_cast<int64_t>(host.size()), 0);
  comm_->barrier();
  EXPECT_EQ(buf.download(), host);
  EXPECT_THROW(comm_->broadcast(buf.get(), 1, 1), std::invalid_argument);
}

}  // namespace
}  // namespace dytrain
