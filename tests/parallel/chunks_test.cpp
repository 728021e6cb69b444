// The chunking that lets MPI messages exceed INT_MAX elements: the split itself on small numbers, then the MPI
// backend's all_reduce and broadcast with a 7-element cap, so a 1001-byte broadcast takes 143 chunks and the last one
// is ragged, exactly the code path of a > 2 GiB broadcast.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <vector>

#include "parallel/chunks.h"
#include "parallel/runtime.h"

#if DYTRAIN_HAVE_MPI
#include "parallel/mpi_comm.h"
#endif

namespace dytrain {
namespace {

TEST(Chunks, CoverTheRangeInOrderWithARaggedTail) {
  const std::vector<Chunk> chunks = split_into_chunks(23, 5);
  ASSERT_EQ(chunks.size(), 5u);
  int64_t next = 0;
  for (const Chunk& c : chunks) {
    EXPECT_EQ(c.offset, next);
    next += c.count;
  }
  EXPECT_EQ(next, 23);
  EXPECT_EQ(chunks.back().count, 3);
  EXPECT_EQ(chunks.front().count, 5);
}

TEST(Chunks, ExactMultipleAndEmpty) {
  EXPECT_EQ(split_into_chunks(10, 5).size(), 2u);
  EXPECT_EQ(split_into_chunks(10, 5).back().count, 5);
  EXPECT_TRUE(split_into_chunks(0, 5).empty());
}

TEST(Chunks, MoreThanIntMaxFitsInIntCounts) {
  // 5 GiB in INT_MAX pieces: two full chunks and a remainder, every count an int.
  const int64_t n = int64_t{5} << 30;
  const std::vector<Chunk> chunks = split_into_chunks(n, INT_MAX);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2].offset, 2 * int64_t{INT_MAX});
  EXPECT_EQ(chunks[2].count, n - 2 * int64_t{INT_MAX});
}

TEST(Chunks, RejectsBadArguments) {
  EXPECT_THROW(split_into_chunks(-1, 5), std::invalid_argument);
  EXPECT_THROW(split_into_chunks(10, 0), std::invalid_argument);
  EXPECT_THROW(split_into_chunks(10, int64_t{INT_MAX} + 1), std::invalid_argument);
}

#if DYTRAIN_HAVE_MPI
TEST(MpiBackend, BroadcastFromTheLastRankInSevenByteChunks) {
  if (!mpi_active()) GTEST_SKIP() << "not started by mpirun: the MPI backend is not in use";
  MpiCommunicator comm(MPI_COMM_WORLD, /*max_message_count=*/7);
  const int root = comm.size() - 1;
  std::vector<uint8_t> buf(1001), want(1001);
  for (int i = 0; i < 1001; ++i) {
    buf[i] = static_cast<uint8_t>((comm.rank() * 13 + i) % 253);
    want[i] = static_cast<uint8_t>((root * 13 + i) % 253);
  }
  comm.broadcast(buf.data(), 1001, root);
  EXPECT_EQ(buf, want);
}

TEST(MpiBackend, AllReduceInSevenElementChunks) {
  if (!mpi_active()) GTEST_SKIP() << "not started by mpirun: the MPI backend is not in use";
  MpiCommunicator comm(MPI_COMM_WORLD, /*max_message_count=*/7);
  const int p = comm.size();
  std::vector<double> got(100), want(100);
  for (int i = 0; i < 100; ++i) {
    got[i] = comm.rank() + 1 + i;
    want[i] = (p * (p + 1) / 2 + static_cast<double>(p) * i) / p;  // the exact sum, divided as the backend does
  }
  comm.all_reduce(got.data(), 100, ReduceOp::avg);
  EXPECT_EQ(got, want);
}
TEST(MpiBackend, AllGatherRejectsAMisplacedOverlap) {
  // in overlapping out anywhere but this rank's own block would be undefined behaviour in MPI_Allgather.
  if (!mpi_active()) GTEST_SKIP() << "not started by mpirun: the MPI backend is not in use";
  MpiCommunicator comm(MPI_COMM_WORLD);
  std::vector<float> out(comm.size() * 4 + 1, 0.0f);
  const float* misplaced = out.data() + comm.rank() * 4 + 1;
  EXPECT_THROW(comm.all_gather(out.data(), misplaced, 4), std::invalid_argument);
}
#endif

}  // namespace
}  // namespace dytrain
