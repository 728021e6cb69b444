// Puts the collective watchdog (watchdog.h) in front of the mesh's communicators: every host-side collective call
// tells the watchdog what it is doing and in which group, so a rank that waits too long for a peer ends itself with
// a line naming the group's peers and their hosts.
#pragma once
#include <memory>
#include <string>

#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "parallel/watchdog.h"

namespace dytrain {

// A communicator whose calls are reported to `watchdog` (which must outlive it) as collectives of `group` (e.g.
// "the dp group of world ranks 0 on a, 2 on b").
std::unique_ptr<Communicator> make_watched_communicator(std::unique_ptr<Communicator> inner, Watchdog& watchdog,
                                                        std::string group);

// Starts mesh.watchdog with parallel.timeout_s = timeout_s (the process ends with exit_code when it fires) and wraps
// mesh.world, dp_group and tp_group. Collective over the world (it gathers every rank's host name). Does nothing for
// a one-process mesh (no peer to wait for) or when timeout_s is 0 (disabled).
void watch_collectives(Mesh& mesh, double timeout_s, int exit_code);

}  // namespace dytrain
