// The communicator the collective tests run on: MPI_COMM_WORLD's when the binary runs under mpirun, otherwise the
// self communicator, so the same tests check both backends.
#pragma once
#include <memory>

#include "parallel/comm.h"
#include "parallel/mesh.h"

namespace dytrain::test {

inline std::unique_ptr<Communicator> world_communicator() { return make_mesh(1).world; }

}  // namespace dytrain::test
