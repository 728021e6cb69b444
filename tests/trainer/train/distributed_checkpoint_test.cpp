// Checkpoints under dp x tp, alone (1 x 1) and under mpirun -np 4 (dp2 x tp2 with ZeRO-1): the streamed save writes
// byte for byte what the whole-buffer save_checkpoint writes; each rank loads back exactly its blocks and moment range;
// a NaN on any rank makes every rank refuse before anything is created; and the host memory a save or a load adds
// stays under checkpoint_staging_bytes, measured as the growth of the resident set's peak on a model whose whole-model
// copies (the previous gather-everything path) would add ~30x more.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/common/read_file.h"
#include "parallel/mesh.h"
#include "tests/common/temp_dir.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/train/distributed_checkpoint.h"
#include "trainer/train/grad_sync.h"

namespace dytrain {
namespace {

using dytrain::testing::read_file;

namespace fs = std::filesystem;

constexpr double kMiB = 1 << 20;

// A LLaMA-shaped table: the vocabulary and the column-parallel linears split by rows, the row-parallel linears by
// columns, norms replicated, and a replicated tensor larger than a round. With C = 1024 every split tensor spans
// several rounds at tp 2 and ZeRO-1 range boundaries fall inside tensors.
ParamTable model_table(int64_t V, int64_t C, int64_t F, int layers, int tp) {
  ParamTable t;
  t.add("model.embed_tokens.weight", {V, C}, ParamGroup::embeddings, TpSplit::rows, tp);
  t.add("model.embed_scale", {1}, ParamGroup::embed_scale);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.add(p + "input_layernorm.weight", {C}, ParamGroup::dyt_gamma_beta);
    t.add(p + "self_attn.q_proj.weight", {C, C}, ParamGroup::matrices, TpSplit::rows, tp);
    t.add(p + "self_attn.o_proj.weight", {C, C}, ParamGroup::matrices, TpSplit::cols, tp);
    t.add(p + "mlp.up_proj.weight", {F, C}, ParamGroup::matrices, TpSplit::rows, tp);
    t.add(p + "mlp.down_proj.weight", {C, F}, ParamGroup::matrices, TpSplit::cols, tp);
  }
  t.add("model.extra.weight", {1536, C}, ParamGroup::matrices);  // replicated, 1.5 rounds
  t.add("model.norm.weight", {C}, ParamGroup::dyt_gamma_beta);
  t.add("lm_head.weight", {V, C}, ParamGroup::matrices, TpSplit::rows, tp);
  return t;
}

// The value of whole element e of tensor i of buffer b (0 params, 1 and 2 the moments): exact in fp32, distinct
// enough that a misplaced block or a shifted range shows.
float value(int b, size_t i, int64_t e) {
  return static_cast<float>((b * 7919 + static_cast<int64_t>(i) * 104729 + e) % 100003) * 0.25f - 1000.0f;
}

// The whole-tensor element of element j of tp rank r's block (take_tp_block's mapping).
int64_t whole_element(const ParamSpec& s, int r, int64_t j) {
  if (s.shape == s.full_shape) return j;
  if (s.split == TpSplit::rows) return r * s.numel + j;
  const int64_t cols = s.shape[1];
  return (j / cols) * s.full_shape[1] + r * cols + j % cols;
}

// Fills buf, which holds the flat range [begin, end) of tp rank r's buffer of `table`, with buffer b's values.
void fill(float* buf, int b, const ParamTable& table, int r, int64_t begin, int64_t end) {
  for (size_t i = 0; i < table.specs().size(); ++i) {
    const ParamSpec& s = table.specs()[i];
    for (int64_t j = std::max(begin, s.offset) - s.offset; j < std::min(end, s.offset + s.numel) - s.offset; ++j)
      buf[s.offset + j - begin] = value(b, i, whole_element(s, r, j));
  }
}

// The number of elements of buf (the range [begin, end) of tp rank r's buffer) that differ from buffer b's values.
int64_t mismatches(const float* buf, int b, const ParamTable& table, int r, int64_t begin, int64_t end) {
  int64_t bad = 0;
  for (size_t i = 0; i < table.specs().size(); ++i) {
    const ParamSpec& s = table.specs()[i];
    for (int64_t j = std::max(begin, s.offset) - s.offset; j < std::min(end, s.offset + s.numel) - s.offset; ++j)
      bad += buf[s.offset + j - begin] != value(b, i, whole_element(s, r, j));
  }
  return bad;
}

// This rank's state under the mesh: parameters, and moments of its ZeRO-1 range (dp > 1) or of everything.
struct RankState {
  ParamTable table;
  std::vector<float> params;
  AdamW optim;

  RankState(const Mesh& mesh, const Config& cfg, ParamTable t)
      : table(std::move(t)),
        params(static_cast<size_t>(table.total()), 0.0f),
        optim(cfg.optim, table, shard_range(table.total(), mesh.dp, mesh.dp_rank).begin,
              shard_range(table.total(), mesh.dp, mesh.dp_rank).end) {}

  void fill_values(const Mesh& mesh) {
    fill(params.data(), 0, table, mesh.tp_rank, 0, table.total());
    fill(optim.exp_avg().data(), 1, table, mesh.tp_rank, optim.begin(), optim.end());
    fill(optim.exp_avg_sq().data(), 2, table, mesh.tp_rank, optim.begin(), optim.end());
  }
  int64_t wrong_values(const Mesh& mesh) {
    return mismatches(params.data(), 0, table, mesh.tp_rank, 0, table.total()) +
           mismatches(optim.exp_avg().data(), 1, table, mesh.tp_rank, optim.begin(), optim.end()) +
           mismatches(optim.exp_avg_sq().data(), 2, table, mesh.tp_rank, optim.begin(), optim.end());
  }
  void clear() {
    std::fill(params.begin(), params.end(), 0.0f);
    std::fill(optim.exp_avg().begin(), optim.exp_avg().end(), 0.0f);
    std::fill(optim.exp_avg_sq().begin(), optim.exp_avg_sq().end(), 0.0f);
  }
};

// dp2 x tp2 under mpirun -np 4 (tp 2 whenever the world is even), 1 x 1 alone.
Mesh test_mesh() {
  const int world = make_mesh(1).world_size;
  return make_mesh(world % 2 == 0 ? 2 : 1);
}

// A directory every rank sees: rank 0 makes it and sends its path to the others.
std::string shared_dir(Mesh& mesh, const testing::TempDir& rank0_dir) {
  char path[4096] = {};
  if (mesh.world_rank == 0) std::snprintf(path, sizeof path, "%s", rank0_dir.path().c_str());
  mesh.world->broadcast(path, sizeof path, 0);
  return path;
}

// The resident set (VmRSS) and its peak since the last reset_peak (VmHWM), in bytes, from /proc/self/status.
double status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::strlen(key)));
  ADD_FAILURE() << key << " not in /proc/self/status";
  return 0;
}
double rss_bytes() { return status_kib("VmRSS:") * 1024; }
double peak_rss_bytes() { return status_kib("VmHWM:") * 1024; }
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }  // Linux >= 4.0: VmHWM := VmRSS

// What `work` adds to this process's resident set at its peak (see the first test for the allocator's setting).
template <typename F>
double peak_growth(F&& work) {
  reset_peak();
  const double before = rss_bytes();
  work();
  return peak_rss_bytes() - before;
}

// Allowance over the staging bound for what the measurement also sees: MPI's internal buffers for a collective of a
// round (a copy of it at most), the allocator's headers, and the pages of the code that runs for the first time.
constexpr double kNoise = 8 * kMiB;

// First in the binary: the peak is reset before each measurement, but a first run of code touches its pages.
TEST(DistributedCheckpoint, SaveAndLoadStageLessThanTheBound) {
  // Every allocation above 64 KiB is its own mapping, returned when freed: a fixed threshold turns off glibc's
  // adaptive one, under which freed buffers stay in the heap and a later save reusing them would show nothing.
  mallopt(M_MMAP_THRESHOLD, 64 << 10);
  Mesh mesh = test_mesh();
  testing::TempDir tmp;
  const std::string run = shared_dir(mesh, tmp);
  Config cfg;
  // 20M parameters (80 MB of fp32): whole copies of parameters and both moments are 240 MB per rank.
  RankState st(mesh, cfg, model_table(4096, 1024, 2048, 2, mesh.tp));
  st.fill_values(mesh);
  const double whole = double(whole_table(st.table).parameters());
  const double bound = checkpoint_staging_bytes(double(widest_checkpoint_row(st.table, mesh.tp)));
  ASSERT_GT(12 * whole, 10 * (bound + kNoise)) << "the model must be large enough for whole copies to show";

  YAML::Node state;
  state["step"] = 7;
  std::string dir;
  save_checkpoint_distributed(mesh, run, 1, cfg, st.table, st.params.data(), st.optim, state);  // pages of the code
  const double save = peak_growth(
      [&] { dir = save_checkpoint_distributed(mesh, run, 7, cfg, st.table, st.params.data(), st.optim, state); });
  st.clear();
  const double load =
      peak_growth([&] { load_checkpoint_distributed(st.params.data(), st.optim, mesh, dir, st.table); });
  EXPECT_EQ(st.wrong_values(mesh), 0);
  std::printf("rank %d (dp %d x tp %d): save staged %.1f MiB, load %.1f MiB; bound %.1f MiB + %.0f MiB noise; whole "
              "copies of parameters and moments: %.0f MiB\n",
              mesh.world_rank, mesh.dp, mesh.tp, save / kMiB, load / kMiB, bound / kMiB, kNoise / kMiB,
              12 * whole / kMiB);
  EXPECT_LT(save, bound + kNoise);
  EXPECT_LT(load, kNoise);  // pread straight into the buffers: nothing staged
  mesh.world->barrier();    // every rank has read before rank 0 removes the directory
}

TEST(DistributedCheckpoint, StreamedSaveWritesTheBytesOfTheWholeBufferSave) {
  Mesh mesh = test_mesh();
  testing::TempDir tmp;
  const std::string run = shared_dir(mesh, tmp);
  Config cfg;
  RankState st(mesh, cfg, model_table(2048, 1024, 2048, 1, mesh.tp));
  st.fill_values(mesh);
  YAML::Node state;
  state["step"] = 4;
  const std::string dir =
      save_checkpoint_distributed(mesh, run + "/streamed", 4, cfg, st.table, st.params.data(), st.optim, state);
  EXPECT_EQ(dir, run + "/streamed/checkpoints/step_00000004");

  if (mesh.world_rank == 0) {
    // The same state as whole buffers, written by one process.
    const ParamTable whole = whole_table(st.table);
    std::vector<float> p(whole.total()), m(whole.total()), v(whole.total());
    fill(p.data(), 0, whole, 0, 0, whole.total());
    fill(m.data(), 1, whole, 0, 0, whole.total());
    fill(v.data(), 2, whole, 0, 0, whole.total());
    const CheckpointData data{&cfg, &whole, p.data(), m.data(), v.data(), state};
    const std::string single = save_checkpoint(run + "/single", 4, data, 0);
    for (const char* f : kCheckpointFiles) {
      const std::string a = read_file(fs::path(dir) / f), b = read_file(fs::path(single) / f);
      EXPECT_FALSE(a.empty()) << f;
      EXPECT_TRUE(a == b) << f << " differs from the whole-buffer save (" << a.size() << " vs " << b.size()
                          << " bytes)";
    }
    EXPECT_FALSE(fs::exists(dir + ".tmp"));
  }
  st.clear();
  EXPECT_EQ(load_checkpoint_distributed(st.params.data(), st.optim, mesh, dir, st.table)["step"].as<int>(), 4);
  EXPECT_EQ(st.wrong_values(mesh), 0);
  mesh.world->barrier();
}

// A small model's state on every rank, filled with known values, and a run directory every rank sees.
class SmallCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override { st.fill_values(mesh); }

  Mesh mesh = test_mesh();
  testing::TempDir tmp;
  const std::string run = shared_dir(mesh, tmp);
  Config cfg;
  RankState st{mesh, cfg, model_table(64, 32, 64, 1, mesh.tp)};
};

TEST_F(SmallCheckpoint, ANonFiniteValueOnAnyRankIsRefusedByAllBeforeAnythingIsCreated) {
  const int last = mesh.world_size - 1;
  if (mesh.world_rank == last) st.optim.exp_avg_sq()[st.optim.exp_avg_sq().size() / 2] = std::nanf("");
  YAML::Node state;
  state["step"] = 5;
  try {
    save_checkpoint_distributed(mesh, run, 5, cfg, st.table, st.params.data(), st.optim, state);
    ADD_FAILURE() << "no NonFiniteError on rank " << mesh.world_rank;
  } catch (const NonFiniteError& e) {  // the trainer's exit 3, on every rank together
    const std::string msg = e.what();
    EXPECT_NE(msg.find("AdamW exp_avg_sq of"), std::string::npos) << msg;
    EXPECT_NE(msg.find("holds NaN or inf"), std::string::npos) << msg;
    if (last > 0) {
      EXPECT_EQ(msg.rfind("rank " + std::to_string(last) + ": ", 0), 0u) << msg;
    }
  }
  mesh.world->barrier();
  EXPECT_FALSE(fs::exists(fs::path(run) / "checkpoints" / "step_00000005.tmp"));
  EXPECT_FALSE(fs::exists(fs::path(run) / "checkpoints" / "step_00000005"));
  mesh.world->barrier();
}

// A replicated tensor (DyT alpha here) that differs on one tp rank is refused on every rank before anything is
// created: only tp rank 0's copy would be written.
TEST_F(SmallCheckpoint, ReplicatedParametersThatDifferAcrossTpAreRefusedByAll) {
  if (mesh.tp == 1) GTEST_SKIP() << "needs tp 2 (an even number of ranks)";
  const ParamSpec* alpha = nullptr;
  for (const ParamSpec& s : st.table.specs())
    if (s.split == TpSplit::replicated) alpha = &s;
  ASSERT_NE(alpha, nullptr);
  const int culprit = mesh.world_size - 1;  // a tp rank 1
  if (mesh.world_rank == culprit) st.params[alpha->offset] = std::nextafter(st.params[alpha->offset], 10.0f);
  YAML::Node state;
  state["step"] = 7;
  try {
    save_checkpoint_distributed(mesh, run, 7, cfg, st.table, st.params.data(), st.optim, state);
    ADD_FAILURE() << "no error on rank " << mesh.world_rank;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("of world rank " + std::to_string(culprit) + " differ"), std::string::npos)
        << e.what();
  }
  mesh.world->barrier();
  EXPECT_FALSE(fs::exists(fs::path(run) / "checkpoints" / "step_00000007"));
  mesh.world->barrier();
}

// A NaN in the file is found by the ranks that read it: the others never see those bytes, and Trainer::restore
// agrees on the outcome across ranks (any rank's CheckpointError skips the checkpoint everywhere).
TEST_F(SmallCheckpoint, ANonFiniteValueInTheFileIsFoundByTheRanksThatReadIt) {
  YAML::Node state;
  state["step"] = 6;
  const std::string dir = save_checkpoint_distributed(mesh, run, 6, cfg, st.table, st.params.data(), st.optim, state);
  // The last element of lm_head.weight: in the last tp rank's block, read by every dp rank of that tp rank.
  const std::string weights = dir + "/model.safetensors";
  if (mesh.world_rank == 0) {
    const SafetensorsIndex idx = read_safetensors_index(weights);
    const StTensorInfo& t = idx.tensors.at("lm_head.weight");
    const float nan = std::nanf("");
    std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(idx.data_start + t.end - 4));
    f.write(reinterpret_cast<const char*>(&nan), 4);
  }
  mesh.world->barrier();
  const bool reads_it = mesh.tp_rank == mesh.tp - 1;
  try {
    load_checkpoint_distributed(st.params.data(), st.optim, mesh, dir, st.table);
    EXPECT_FALSE(reads_it) << "rank " << mesh.world_rank << " loaded a NaN";
  } catch (const CheckpointError& e) {
    EXPECT_TRUE(reads_it) << e.what();
    EXPECT_NE(std::string(e.what()).find(weights + ": tensor lm_head.weight holds NaN or inf"), std::string::npos)
        << e.what();
  }
  mesh.world->barrier();
}

}  // namespace
}  // namespace dytrain
