// The mesh layout for every tp from 1 to 4 on whatever world the binary runs in (1, 2 or 4 ranks): where tp divides
// the world, each group's members are found by gathering world ranks over it (TP groups must be contiguous ranks, DP
// groups strided); where it does not, make_mesh must refuse with a message naming parallel.tp and the world size.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parallel/mesh.h"
#include "parallel/runtime.h"

namespace dytrain {
namespace {

// The world ranks of a group's members, in group-rank order.
std::vector<float> members(Communicator& group, int world_rank) {
  std::vector<float> out(group.size());
  const float mine = static_cast<float>(world_rank);
  group.all_gather(out.data(), &mine, 1);
  return out;
}

TEST(Mesh, GroupsForEveryTensorParallelDegree) {
  const int world_size = make_mesh(1).world_size;
  for (int tp = 1; tp <= 4; ++tp) {
    if (world_size % tp != 0) continue;
    Mesh m = make_mesh(tp);
    const int r = m.world_rank;
    EXPECT_EQ(m.world->size(), world_size);
    EXPECT_EQ(m.world->rank(), r);
    EXPECT_EQ(m.tp, tp);
    EXPECT_EQ(m.dp, world_size / tp);
    EXPECT_EQ(m.tp_rank, r % tp);
    EXPECT_EQ(m.dp_rank, r / tp);
    EXPECT_EQ(m.tp_group->size(), tp);
    EXPECT_EQ(m.tp_group->rank(), m.tp_rank);
    EXPECT_EQ(m.dp_group->size(), m.dp);
    EXPECT_EQ(m.dp_group->rank(), m.dp_rank);
    // One host runs every test rank, so the node-local rank is the world rank.
    EXPECT_EQ(m.local_rank, r);
    EXPECT_EQ(m.host, host_name());

    std::vector<float> tp_want, dp_want;
    for (int k = 0; k < tp; ++k) tp_want.push_back(static_cast<float>(m.dp_rank * tp + k));    // contiguous
    for (int k = 0; k < m.dp; ++k) dp_want.push_back(static_cast<float>(k * tp + m.tp_rank));  // strided
    EXPECT_EQ(members(*m.tp_group, r), tp_want) << "tp " << tp;
    EXPECT_EQ(members(*m.dp_group, r), dp_want) << "tp " << tp;
  }
}

TEST(Mesh, RefusesATensorParallelDegreeThatDoesNotDivideTheWorld) {
  const int world_size = make_mesh(1).world_size;
  const int tp = world_size == 1 ? 2 : world_size + 1;
  try {
    make_mesh(tp);
    ADD_FAILURE() << "make_mesh(" << tp << ") on " << world_size << " ranks should throw";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("parallel.tp = " + std::to_string(tp)), std::string::npos) << message;
    if (world_size == 1) {
      EXPECT_NE(message.find("mpirun -np"), std::string::npos) << message;
    } else {
      EXPECT_NE(message.find("world size " + std::to_string(world_size)), std::string::npos) << message;
    }
  }
}

TEST(Mesh, RefusesTensorParallelBelowOne) { EXPECT_THROW(make_mesh(0), std::invalid_argument); }

}  // namespace
}  // namespace dytrain
