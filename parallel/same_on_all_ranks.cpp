// check_same_on_all_ranks through the Communicator interface alone, so it works on any backend. Rank 0's value is
// broadcast; every rank finds whether it differs; an all-reduce max of -rank (or -size when equal) gives the lowest
// differing rank to everyone; that rank then broadcasts its value for the message. Every rank reaches the same
// verdict, so all of them throw together and none is left waiting in a collective. Ranks fit a double exactly.
#include <cinttypes>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "parallel/comm.h"
#include "parallel/runtime.h"

namespace dytrain {
namespace {

std::string hex(uint64_t value) {
  char text[19];
  std::snprintf(text, sizeof(text), "0x%016" PRIx64, value);
  return text;
}

}  // namespace

void check_same_on_all_ranks(Communicator& world, uint64_t value, const std::string& what) {
  uint64_t root_value = value;
  world.broadcast(&root_value, sizeof(root_value), 0);
  double neg_first_differing = value == root_value ? -static_cast<double>(world.size()) : -world.rank();
  world.all_reduce(&neg_first_differing, 1, ReduceOp::max);
  const int first_differing = static_cast<int>(-neg_first_differing);
  if (first_differing == world.size()) return;
  uint64_t differing_value = value;
  world.broadcast(&differing_value, sizeof(differing_value), first_differing);
  throw std::runtime_error(what + " differs between ranks: rank " + std::to_string(first_differing) + " has " +
                           hex(differing_value) + ", rank 0 has " + hex(root_value) +
                           ". Every rank must run the same binary with the same config and overrides.");
}

}  // namespace dytrain
