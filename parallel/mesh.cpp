// Groups come from MPI_Comm_split of the world communicator with key = world rank, so the rank inside a group is the
// position along that mesh axis (tp_rank in a TP group, dp_rank in a DP group) without any renumbering.
#include "parallel/mesh.h"

#include <stdexcept>
#include <string>

#include "parallel/runtime.h"

#if DYTRAIN_HAVE_MPI
#include "parallel/mpi_check.h"
#include "parallel/mpi_comm.h"
#endif

namespace dytrain {
namespace {

Mesh make_self_mesh(int tp) {
  if (tp != 1) {
#if DYTRAIN_HAVE_MPI
    const std::string build_hint;
#else
    const std::string build_hint = " This build has no MPI: reconfigure with -DDYTRAIN_WITH_MPI=ON and MPI installed.";
#endif
    throw std::invalid_argument("parallel.tp = " + std::to_string(tp) + " needs " + std::to_string(tp) +
                                " processes, but this one runs alone (not started by an MPI launcher): launch with "
                                "mpirun -np N, N a multiple of " + std::to_string(tp) + " (e.g. launch/mpirun.sh -np " +
                                std::to_string(tp) + " -- CONFIG.yaml), or set parallel.tp=1." + build_hint);
  }
  Mesh mesh;
  mesh.host = host_name();
  mesh.world = make_self_communicator();
  mesh.dp_group = make_self_communicator();
  mesh.tp_group = make_self_communicator();
  mesh.node_group = make_self_communicator();
  return mesh;
}

#if DYTRAIN_HAVE_MPI
Mesh make_mpi_mesh(int tp) {
  auto world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD);
  const int world_size = world->size();
  if (world_size % tp != 0) {
    throw std::invalid_argument("parallel.tp = " + std::to_string(tp) + " does not divide the world size " +
                                std::to_string(world_size) + ": launch a multiple of " + std::to_string(tp) +
                                " ranks (mpirun -np " + std::to_string(tp * (world_size / tp + 1)) +
                                ") or set parallel.tp to a divisor of " + std::to_string(world_size));
  }
  Mesh mesh;
  mesh.host = host_name();
  mesh.world_rank = world->rank();
  mesh.world_size = world_size;
  mesh.tp = tp;
  mesh.dp = world_size / tp;
  mesh.tp_rank = mesh.world_rank % tp;
  mesh.dp_rank = mesh.world_rank / tp;

  MPI_Comm node = MPI_COMM_NULL;
  DYTRAIN_MPI_CHECK(MPI_Comm_split_type(world->comm(), MPI_COMM_TYPE_SHARED, mesh.world_rank, MPI_INFO_NULL, &node));
  const int local_rank_code = MPI_Comm_rank(node, &mesh.local_rank);
  const int local_size_code = MPI_Comm_size(node, &mesh.local_size);
  if (local_rank_code == MPI_SUCCESS && local_size_code == MPI_SUCCESS) {
    try {
      mesh.node_group = std::make_unique<MpiCommunicator>(node);  // a duplicate: node itself is freed below
    } catch (...) {
      MPI_Comm_free(&node);
      throw;
    }
  }
  MPI_Comm_free(&node);
  DYTRAIN_MPI_CHECK(local_rank_code);
  DYTRAIN_MPI_CHECK(local_size_code);

  mesh.tp_group = world->split(/*color=*/mesh.dp_rank, /*key=*/mesh.world_rank);
  mesh.dp_group = world->split(/*color=*/mesh.tp_rank, /*key=*/mesh.world_rank);
  mesh.world = std::move(world);
  return mesh;
}
#endif

}  // namespace

Mesh make_mesh(int tp) {
  if (tp < 1) {
    throw std::invalid_argument("parallel.tp = " + std::to_string(tp) + " must be at least 1");
  }
#if DYTRAIN_HAVE_MPI
  if (mpi_active()) return make_mpi_mesh(tp);
#endif
  return make_self_mesh(tp);
}

}  // namespace dytrain
