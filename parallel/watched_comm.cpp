// Each call marks the watchdog busy for its duration. all_reduce_start only enqueues (its wait is in synchronize), so
// it is not watched; synchronize is.
#include "parallel/watched_comm.h"

#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "parallel/runtime.h"

namespace dytrain {
namespace {

class WatchedCommunicator final : public Communicator {
 public:
  WatchedCommunicator(std::unique_ptr<Communicator> inner, Watchdog& watchdog, std::string group)
      : inner_(std::move(inner)), watchdog_(watchdog), group_(std::move(group)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void all_reduce(float* buf, int64_t n, ReduceOp op) override {
    Busy busy(*this, "all_reduce");
    inner_->all_reduce(buf, n, op);
  }
  void all_reduce(double* buf, int64_t n, ReduceOp op) override {
    Busy busy(*this, "all_reduce");
    inner_->all_reduce(buf, n, op);
  }
  void all_reduce_start(float* buf, int64_t n, ReduceOp op) override { inner_->all_reduce_start(buf, n, op); }
  void reduce_scatter(float* out, const float* in, int64_t n_per_rank, ReduceOp op) override {
    Busy busy(*this, "reduce_scatter");
    inner_->reduce_scatter(out, in, n_per_rank, op);
  }
  void all_gather(float* out, const float* in, int64_t n_per_rank) override {
    Busy busy(*this, "all_gather");
    inner_->all_gather(out, in, n_per_rank);
  }
  void broadcast(void* buf, int64_t bytes, int root) override {
    Busy busy(*this, "broadcast");
    inner_->broadcast(buf, bytes, root);
  }
  void barrier() override {
    Busy busy(*this, "barrier");
    inner_->barrier();
  }
  void synchronize() override {
    Busy busy(*this, "synchronize (waiting for all_reduce_start)");
    inner_->synchronize();
  }

 private:
  struct Busy {
    Busy(WatchedCommunicator& c, const char* op) : w(c.watchdog_) { w.begin(op, &c.group_); }
    ~Busy() { w.end(); }
    Watchdog& w;
  };

  std::unique_ptr<Communicator> inner_;
  Watchdog& watchdog_;
  const std::string group_;
};

// Every world rank's host name, in rank order: one broadcast per rank, once at startup.
std::vector<std::string> host_names(Communicator& world, const std::string& mine) {
  std::vector<std::string> hosts(world.size());
  for (int r = 0; r < world.size(); ++r) {
    char name[256] = {};
    if (r == world.rank()) std::strncpy(name, mine.c_str(), sizeof(name) - 1);
    world.broadcast(name, sizeof(name), r);
    hosts[r] = name;
  }
  return hosts;
}

// "the dp group of world ranks 0 on a, 2 on b (this rank is 0)": the ranks a collective of that group waits for.
std::string describe(const char* name, const std::vector<std::string>& hosts, int first, int count, int stride,
                     int self) {
  std::string members;
  for (int i = 0; i < count; ++i) {
    const int r = first + i * stride;
    members += fmt::format("{}{} on {}", i ? ", " : "", r, hosts[r]);
  }
  return fmt::format("the {} of world ranks {} (this is rank {})", name, members, self);
}

}  // namespace

std::unique_ptr<Communicator> make_watched_communicator(std::unique_ptr<Communicator> inner, Watchdog& watchdog,
                                                        std::string group) {
  return std::make_unique<WatchedCommunicator>(std::move(inner), watchdog, std::move(group));
}

void watch_collectives(Mesh& mesh, double timeout_s, int exit_code) {
  if (mesh.world_size == 1 || timeout_s <= 0) return;
  const std::vector<std::string> hosts = host_names(*mesh.world, mesh.host);
  const int r = mesh.world_rank;
  mesh.watchdog = std::make_unique<Watchdog>(timeout_s, openmpi_keepalive_grace_s(), process_label(), exit_code);
  mesh.world = make_watched_communicator(std::move(mesh.world), *mesh.watchdog,
                                         describe("world", hosts, 0, mesh.world_size, 1, r));
  mesh.dp_group = make_watched_communicator(std::move(mesh.dp_group), *mesh.watchdog,
                                            describe("dp group", hosts, mesh.tp_rank, mesh.dp, mesh.tp, r));
  mesh.tp_group = make_watched_communicator(std::move(mesh.tp_group), *mesh.watchdog,
                                            describe("tp group", hosts, mesh.dp_rank * mesh.tp, mesh.tp, 1, r));
  mesh.node_group = make_watched_communicator(std::move(mesh.node_group), *mesh.watchdog,
                                              fmt::format("the ranks on {} (this is rank {})", mesh.host, r));
}

}  // namespace dytrain
