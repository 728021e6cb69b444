// check_same_on_all_ranks: silent when every rank agrees; when some ranks differ, every rank throws (none is left in a
// collective) and the message names the lowest differing rank with its value and rank 0's.
#include <gtest/gtest.h>

#include <string>

#include "parallel/runtime.h"
#include "tests/parallel/world.h"

namespace dytrain {
namespace {

TEST(SameOnAllRanks, AgreeingRanksPass) {
  auto world = test::world_communicator();
  EXPECT_NO_THROW(check_same_on_all_ranks(*world, 0x1234abcdULL, "config hash"));
}

TEST(SameOnAllRanks, NamesTheLowestDifferingRank) {
  auto world = test::world_communicator();
  if (world->size() == 1) GTEST_SKIP() << "one rank cannot differ from itself; run under mpirun -np 2 or 4";
  // Ranks from 1 up differ from rank 0 and from each other; rank 1 is the one to name.
  const uint64_t value = 0x100 + static_cast<uint64_t>(world->rank());
  try {
    check_same_on_all_ranks(*world, value, "config hash");
    ADD_FAILURE() << "differing values passed";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("config hash differs between ranks: rank 1 has 0x0000000000000101"), std::string::npos)
        << message;
    EXPECT_NE(message.find("rank 0 has 0x0000000000000100"), std::string::npos) << message;
  }
  // The collective is still usable afterwards: every rank left it together.
  EXPECT_NO_THROW(check_same_on_all_ranks(*world, 7, "config hash"));
}

TEST(SameOnAllRanks, OnlyTheLastRankDiffers) {
  auto world = test::world_communicator();
  if (world->size() == 1) GTEST_SKIP() << "one rank cannot differ from itself; run under mpirun -np 2 or 4";
  const int last = world->size() - 1;
  const uint64_t value = world->rank() == last ? 99 : 42;
  try {
    check_same_on_all_ranks(*world, value, "seed");
    ADD_FAILURE() << "differing values passed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("rank " + std::to_string(last) + " has"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dytrain
