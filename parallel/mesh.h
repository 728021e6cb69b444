// The process mesh: world = dp x tp ranks. TP groups are contiguous ranks (tp_rank = world_rank % tp), so a TP group
// sits on one node's fast links when tp divides the ranks per node; DP groups are strided (ranks with the same
// tp_rank). local_rank (rank among the processes of this node) picks the GPU. Built once in main and passed in.
#pragma once
#include <memory>
#include <string>

#include "parallel/comm.h"
#include "parallel/watchdog.h"

namespace dytrain {

struct Mesh {
  int world_rank = 0, world_size = 1;
  int dp = 1, tp = 1;
  int dp_rank = 0, tp_rank = 0;
  int local_rank = 0;  // rank among the processes on this host
  int local_size = 1;  // processes on this host
  std::string host;
  // Guards the communicators below (watch_collectives in watched_comm.h; null: unguarded). Declared first so it
  // outlives them.
  std::unique_ptr<Watchdog> watchdog;
  std::unique_ptr<Communicator> world;     // all ranks
  std::unique_ptr<Communicator> dp_group;  // the dp ranks with this tp_rank, ordered by dp_rank
  std::unique_ptr<Communicator> tp_group;  // the tp ranks with this dp_rank, ordered by tp_rank
  std::unique_ptr<Communicator> node_group;  // the local_size ranks on this host, ordered by local_rank
};

// Under MPI (ProcessRuntime initialized it) the mesh spans MPI_COMM_WORLD with dp = world size / tp, on MPI
// communicators; otherwise a 1 x 1 mesh on self communicators. Throws when tp < 1, when tp does not divide the world
// size, or when tp > 1 without MPI. Collective over MPI_COMM_WORLD.
Mesh make_mesh(int tp);

}  // namespace dytrain
