// Every collective against values computed locally from known per-rank inputs: rank r contributes r + 1 + i at
// element i, so the sum over P ranks is P(P+1)/2 + P*i, the average that sum / P and the max P + i. All inputs are
// small integers, exact in float, so sums are exact and compared with EXPECT_EQ; avg is compared with the same float
// division the contract names (sum / size) applied to the exact sum. Tests use EXPECT (never ASSERT) around
// collectives: a rank that returned early from a test would leave its peers waiting in the next collective.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "parallel/comm.h"
#include "tests/parallel/collective_values.h"
#include "tests/parallel/world.h"

namespace dytrain {
namespace {

using test::contribution;
using test::kOps;
using test::kSizes;
using test::reduced;

template <typename T>
void check_all_reduce(Communicator& comm) {
  for (int64_t n : kSizes) {
    for (ReduceOp op : kOps) {
      std::vector<T> got = contribution<T>(comm.rank(), n), want(n);
      for (int64_t j = 0; j < n; ++j) want[j] = reduced<T>(op, comm.size(), j);
      comm.all_reduce(got.data(), n, op);
      EXPECT_EQ(got, want) << "n " << n << " op " << static_cast<int>(op);
    }
  }
}

TEST(Collectives, AllReduceFloat) {
  auto comm = test::world_communicator();
  check_all_reduce<float>(*comm);
}

TEST(Collectives, AllReduceStartCompletesAtSynchronize) {
  // Ranges of one buffer started one after another (as gradient buckets are), a blocking all-reduce on another
  // buffer issued while they are pending, then synchronize(): every range holds its reduction.
  auto comm = test::world_communicator();
  for (ReduceOp op : kOps) {
    std::vector<std::vector<float>> got;
    for (int64_t n : kSizes) got.push_back(contribution<float>(comm->rank(), n));
    for (std::vector<float>& g : got) comm->all_reduce_start(g.data(), int64_t(g.size()), op);
    std::vector<float> blocking = contribution<float>(comm->rank(), 5);
    comm->all_reduce(blocking.data(), 5, ReduceOp::sum);
    comm->synchronize();
    for (const std::vector<float>& g : got)
      for (size_t j = 0; j < g.size(); ++j)
        EXPECT_EQ(g[j], reduced<float>(op, comm->size(), int64_t(j))) << "n " << g.size() << " op " << int(op);
    EXPECT_EQ(blocking[4], reduced<float>(ReduceOp::sum, comm->size(), 4));
  }
}

TEST(Collectives, AllReduceDouble) {
  auto comm = test::world_communicator();
  check_all_reduce<double>(*comm);
}

TEST(Collectives, AllReduceMaxPicksTheOwningRank) {
  // Element i is large only on rank i % P and negative elsewhere, so max is neither a sum nor rank 0's value.
  auto comm = test::world_communicator();
  const int p = comm->size(), r = comm->rank();
  std::vector<float> got(37), want(37);
  for (int i = 0; i < 37; ++i) {
    got[i] = i % p == r ? 100.0f + i : -1.0f - r;
    want[i] = 100.0f + i;
  }
  comm->all_reduce(got.data(), 37, ReduceOp::max);
  EXPECT_EQ(got, want);
}

TEST(Collectives, ReduceScatter) {
  auto comm = test::world_communicator();
  const int p = comm->size(), r = comm->rank();
  for (int64_t n : kSizes) {
    const std::vector<float> in = contribution<float>(r, p * n);  // (P * n)
    for (ReduceOp op : kOps) {
      std::vector<float> got(n, -7.0f), want(n);
      for (int64_t k = 0; k < n; ++k) want[k] = reduced<float>(op, p, r * n + k);  // this rank's block
      comm->reduce_scatter(got.data(), in.data(), n, op);
      EXPECT_EQ(got, want) << "n " << n << " op " << static_cast<int>(op);
    }
  }
}

// Rank q's block in a gather: 1000 q + k.
std::vector<float> gather_block(int rank, int64_t n) {
  std::vector<float> v(n);
  for (int64_t k = 0; k < n; ++k) v[k] = 1000.0f * rank + k;
  return v;
}

std::vector<float> gathered(int size, int64_t n) {
  std::vector<float> all;
  for (int q = 0; q < size; ++q) {
    const std::vector<float> block = gather_block(q, n);
    all.insert(all.end(), block.begin(), block.end());
  }
  return all;
}

TEST(Collectives, AllGather) {
  auto comm = test::world_communicator();
  const int p = comm->size();
  for (int64_t n : kSizes) {
    const std::vector<float> in = gather_block(comm->rank(), n);
    std::vector<float> out(p * n, -1.0f);  // (P, n)
    comm->all_gather(out.data(), in.data(), n);
    EXPECT_EQ(out, gathered(p, n)) << "n " << n;
  }
}

TEST(Collectives, AllGatherInPlace) {
  auto comm = test::world_communicator();
  const int p = comm->size(), r = comm->rank();
  const int64_t n = 17;
  std::vector<float> out(p * n, -1.0f);  // (P, n); only this rank's block is filled
  const std::vector<float> mine = gather_block(r, n);
  std::copy(mine.begin(), mine.end(), out.begin() + r * n);
  comm->all_gather(out.data(), out.data() + r * n, n);
  EXPECT_EQ(out, gathered(p, n));
}

// Rank r's bytes before a broadcast; a pattern that differs between ranks at every position.
std::vector<uint8_t> rank_bytes(int rank, int64_t bytes) {
  std::vector<uint8_t> v(bytes);
  for (int64_t i = 0; i < bytes; ++i) v[i] = static_cast<uint8_t>((rank * 31 + i * 7 + 1) % 251);
  return v;
}

TEST(Collectives, BroadcastFromLastRank) {
  // The last rank is the root, so a backend that ignores root (and sends rank 0's bytes) fails when P > 1.
  auto comm = test::world_communicator();
  const int root = comm->size() - 1;
  std::vector<uint8_t> buf = rank_bytes(comm->rank(), 1001);
  comm->broadcast(buf.data(), 1001, root);
  EXPECT_EQ(buf, rank_bytes(root, 1001));
}

TEST(Collectives, BroadcastRejectsAMissingRoot) {
  auto comm = test::world_communicator();
  char byte = 0;
  EXPECT_THROW(comm->broadcast(&byte, 1, comm->size()), std::invalid_argument);
}

TEST(Collectives, BarrierWaitsForTheLastRank) {
  // Rank 0 arrives 300 ms late; everyone else must be held at the barrier for (nearly) that long. The 150 ms bound
  // leaves room for the skew with which ranks leave the first barrier on an oversubscribed CI machine.
  auto comm = test::world_communicator();
  comm->barrier();
  const auto start = std::chrono::steady_clock::now();
  if (comm->rank() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  comm->barrier();
  comm->synchronize();
  const auto waited_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited_ms, 150);
}

}  // namespace
}  // namespace dytrain
