// The staged device backend (device_comm.h) on real ranks: every collective on device buffers against values computed
// locally (collective_values.h), as comm_test.cpp does for the host backends: sums compare with EXPECT_EQ and avg with
// the contract's sum / size, and the bf16 ring option against its host emulation. Run alone and under mpirun -np 2
// and 4, where the ranks share GPU 0 (the point of this backend: NCCL refuses that). Skips with a message on a machine
// without a CUDA device (every rank sees the same, so no rank waits in a collective alone).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel/bf16_ring_sum.h"
#include "parallel/device_comm.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/parallel/collective_values.h"
#include "tests/parallel/world.h"

namespace dytrain {
namespace {

using test::DeviceBuffer;

using test::contribution;
using test::kSizes;
using test::reduced;

class StagedComm : public testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
      GTEST_SKIP() << "no CUDA device: the staged device backend is built but cannot run here";
    host_ = test::world_communicator();
    comm_ = make_staged_communicator(*host_, /*device=*/0);
  }

  template <typename T>
  void check_all_reduce() {
    for (int64_t n : kSizes)
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max}) {
        DeviceBuffer<T> buf(contribution<T>(comm_->rank(), n));
        comm_->all_reduce(buf.get(), n, op);
        comm_->synchronize();
        std::vector<T> want(n);
        for (int64_t j = 0; j < n; ++j) want[j] = reduced<T>(op, comm_->size(), j);
        EXPECT_EQ(buf.download(), want) << "n " << n << " op " << static_cast<int>(op);
      }
  }

  std::unique_ptr<Communicator> host_;
  std::unique_ptr<DeviceCommunicator> comm_;
};

TEST_F(StagedComm, AllReduceFloatAndDouble) {
  check_all_reduce<float>();
  check_all_reduce<double>();
}

TEST_F(StagedComm, Bf16SumIsExactOnSmallIntegers) {
  // Integers up to 256 are exact in bf16's 8 significant bits: sums of r + 1 + j for j < 64 over 2 ranks stay below.
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{63}}) {
    std::vector<uint16_t> bits(n);
    for (int64_t j = 0; j < n; ++j) bits[j] = test::bf16_bits(static_cast<float>(comm_->rank() + 1 + j));
    DeviceBuffer<uint16_t> buf(bits);
    comm_->all_reduce_sum_bf16(reinterpret_cast<__nv_bfloat16*>(buf.get()), n);
    comm_->synchronize();
    const std::vector<uint16_t> got = buf.download();
    for (int64_t j = 0; j < n; ++j)
      EXPECT_EQ(test::bf16_value(got[j]), reduced<float>(ReduceOp::sum, comm_->size(), j)) << "element " << j;
  }
}

TEST_F(StagedComm, Bf16RingSumIsTheHostEmulationOnEveryRank) {
  // The ring option against the host emulation it runs (tested on its own in bf16_ring_sum_test.cpp) on every
  // rank's values, which each rank knows: rank 0 holds values near 1, the others values below half a bf16 spacing
  // there, so from 3 ranks on the per-hop rounding loses some of them and the result differs from the fp32 sum.
  std::unique_ptr<DeviceCommunicator> ring = make_staged_communicator(*host_, /*device=*/0, StagedBf16Sum::ring);
  const int P = ring->size();
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{100}}) {
    auto value = [](int r, int64_t j) {
      return r == 0 ? 1.0f + static_cast<float>(j % 64) * 0x1p-7f : static_cast<float>(1 + (j + r) % 3) * 0x1p-10f;
    };
    std::vector<float> all(P * n), want(n);
    for (int r = 0; r < P; ++r)
      for (int64_t j = 0; j < n; ++j) all[r * n + j] = value(r, j);
    bf16_ring_sum(want.data(), all.data(), P, n);
    std::vector<uint16_t> bits(n);
    for (int64_t j = 0; j < n; ++j) bits[j] = test::bf16_bits(value(ring->rank(), j));
    DeviceBuffer<uint16_t> buf(bits);
    ring->all_reduce_sum_bf16(reinterpret_cast<__nv_bfloat16*>(buf.get()), n);
    ring->synchronize();
    std::vector<float> got(n);
    const std::vector<uint16_t> got_bits = buf.download();
    for (int64_t j = 0; j < n; ++j) got[j] = test::bf16_value(got_bits[j]);
    EXPECT_EQ(got, want) << "n " << n;
    std::vector<float> every(P * n);
    host_->all_gather(every.data(), got.data(), n);
    for (int r = 1; r < P; ++r)
      EXPECT_TRUE(std::equal(got.begin(), got.end(), every.begin() + r * n)) << "rank " << r << " n " << n;
  }
}

TEST_F(StagedComm, ReduceScatterSeparateAndInPlace) {
  const int P = comm_->size(), r = comm_->rank();
  for (int64_t block : kSizes) {
    DeviceBuffer<float> in(contribution<float>(r, P * block)), out(std::vector<float>(block, -1.0f));
    comm_->reduce_scatter(out.get(), in.get(), block, ReduceOp::avg);
    // In place, as ZeRO-1 runs it: this rank's block of the input receives its block of the result.
    comm_->reduce_scatter(in.get() + r * block, in.get(), block, ReduceOp::sum);
    comm_->synchronize();
    std::vector<float> want_avg(block), want_sum(block);
    for (int64_t j = 0; j < block; ++j) {
      want_avg[j] = reduced<float>(ReduceOp::avg, P, r * block + j);
      want_sum[j] = reduced<float>(ReduceOp::sum, P, r * block + j);
    }
    EXPECT_EQ(out.download(), want_avg) << "block " << block;
    const std::vector<float> got = in.download();
    EXPECT_EQ(std::vector<float>(got.begin() + r * block, got.begin() + (r + 1) * block), want_sum) << "block "
                                                                                                     << block;
  }
}

TEST_F(StagedComm, AllGatherSeparateAndInPlace) {
  const int P = comm_->size(), r = comm_->rank();
  for (int64_t block : kSizes) {
    std::vector<float> want(P * block);
    for (int q = 0; q < P; ++q)
      for (int64_t j = 0; j < block; ++j) want[q * block + j] = static_cast<float>(100 * q + j);
    std::vector<float> mine(block);
    for (int64_t j = 0; j < block; ++j) mine[j] = static_cast<float>(100 * r + j);
    DeviceBuffer<float> in(mine), out(std::vector<float>(P * block, -1.0f));
    comm_->all_gather(out.get(), in.get(), block);
    std::vector<float> own_only(P * block, -1.0f);
    std::copy(mine.begin(), mine.end(), own_only.begin() + r * block);
    DeviceBuffer<float> in_place(own_only);
    comm_->all_gather(in_place.get(), in_place.get() + r * block, block);
    comm_->synchronize();
    EXPECT_EQ(out.download(), want) << "block " << block;
    EXPECT_EQ(in_place.download(), want) << "block " << block;
  }
}

TEST_F(StagedComm, BroadcastFromTheLastRankAndBarrier) {
  const int root = comm_->size() - 1;
  std::vector<float> host(7, static_cast<float>(comm_->rank()));
  DeviceBuffer<float> buf(host);
  comm_->broadcast(buf.get(), 7 * sizeof(float), root);
  comm_->barrier();
  EXPECT_EQ(buf.download(), std::vector<float>(7, static_cast<float>(root)));
}

}  // namespace
}  // namespace dytrain
