// train.device's resolution on made-up hosts (device_choice.h): the decision from what each local rank sees, with its
// reason. Before this, `auto` compared the visible GPU count with the ranks per host, so per-task binding (each rank
// sees one GPU, its own) trained on the CPU without a word.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "trainer/train/device_choice.h"

namespace dytrain {
namespace {

std::string uuid(int i) { return "GPU-0000000" + std::to_string(i) + "-aaaa-bbbb-cccc-dddddddddddd"; }

// `ranks` local ranks on host "node7", this one local_rank; each sees visible[r] GPUs and takes uuids[r].
DeviceFacts host(const std::string& want, int local_rank, std::vector<int> visible, std::vector<std::string> uuids,
                 const std::string& gpu_comm = "nccl") {
  DeviceFacts f;
  f.want = want;
  f.build_has_cuda = true;
  f.gpu_comm = gpu_comm;
  f.host = "node7";
  f.local_rank = local_rank;
  f.visible = std::move(visible);
  f.uuids = std::move(uuids);
  return f;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(DeviceChoice, EightRanksOnEightVisibleGpusTakeOneEach) {
  std::vector<std::string> uuids;
  for (int r = 0; r < 8; ++r) uuids.push_back(uuid(r));
  for (int r : {0, 5}) {
    const DeviceChoice c = choose_device(host("auto", r, std::vector<int>(8, 8), uuids));
    EXPECT_EQ(c.device, "cuda");
    EXPECT_EQ(c.gpu, r);
    EXPECT_FALSE(c.warn);
    EXPECT_TRUE(contains(c.reason, "training on GPU " + std::to_string(r) + " of the 8")) << c.reason;
    EXPECT_TRUE(contains(c.reason, uuid(r))) << c.reason;
  }
}

// srun --gpus-per-task=1 / --gpu-bind / CUDA_VISIBLE_DEVICES=$LOCAL_RANK: every rank sees one GPU, a different one.
TEST(DeviceChoice, PerTaskBindingUsesTheOneGpuEachRankSees) {
  std::vector<std::string> uuids = {uuid(0), uuid(1), uuid(2), uuid(3)};
  for (const char* want : {"auto", "cuda"}) {
    DeviceFacts f = host(want, 2, {1, 1, 1, 1}, uuids);
    f.visible_devices_env = "2";
    const DeviceChoice c = choose_device(f);
    EXPECT_EQ(c.device, "cuda") << c.reason << c.error;
    EXPECT_EQ(c.gpu, 0);
    EXPECT_TRUE(c.error.empty()) << c.error;
    for (const std::string& part : {std::string("GPU 0 of the 1 local rank 2 sees"), uuid(2),
                                   std::string("CUDA_VISIBLE_DEVICES=2"), std::string("each of the 4 ranks on node7")})
      EXPECT_TRUE(contains(c.reason, part)) << part << " in: " << c.reason;
  }
}

// A binding that gives two ranks the same GPU: NCCL cannot run them; the staged backend can.
TEST(DeviceChoice, RanksThatWouldShareAGpuAreNamed) {
  const std::vector<std::string> uuids = {uuid(0), uuid(1), uuid(1), uuid(3)};
  const DeviceChoice fallback = choose_device(host("auto", 0, {1, 1, 1, 1}, uuids));
  EXPECT_EQ(fallback.device, "cpu");
  EXPECT_TRUE(fallback.warn) << "the CPU on a GPU host is never silent";
  for (const std::string& part : {std::string("training on the CPU although node7 has GPUs"),
                                 std::string("local ranks 1, 2 would share ") + uuid(1),
                                 std::string("parallel.gpu_comm: mpi"), std::string("train.device: cpu")})
    EXPECT_TRUE(contains(fallback.reason, part)) << part << " in: " << fallback.reason;

  const DeviceChoice refused = choose_device(host("cuda", 0, {1, 1, 1, 1}, uuids));
  EXPECT_TRUE(contains(refused.error, "train.device is cuda, but on node7, local ranks 1, 2 would share"))
      << refused.error;

  const DeviceChoice staged = choose_device(host("auto", 2, {1, 1, 1, 1}, uuids, "mpi"));
  EXPECT_EQ(staged.device, "cuda");
  EXPECT_EQ(staged.gpu, 0);
  EXPECT_TRUE(contains(staged.reason, "local ranks 1, 2 would share")) << staged.reason;
}

// No binding, one GPU for four ranks: every rank takes GPU 0 (the same UUID).
TEST(DeviceChoice, OneGpuForFourRanksNeedsTheStagedBackend) {
  const std::vector<std::string> same(4, uuid(0));
  const DeviceChoice nccl = choose_device(host("auto", 3, {1, 1, 1, 1}, same));
  EXPECT_EQ(nccl.device, "cpu");
  EXPECT_TRUE(nccl.warn);
  EXPECT_TRUE(contains(nccl.reason, "local ranks 0, 1, 2, 3 would share")) << nccl.reason;
  const DeviceChoice mpi = choose_device(host("auto", 3, {1, 1, 1, 1}, same, "mpi"));
  EXPECT_EQ(mpi.device, "cuda");
  EXPECT_EQ(mpi.gpu, 0);
  // Two GPUs for four ranks: local rank r takes GPU r mod 2.
  const DeviceChoice two = choose_device(host("auto", 3, {2, 2, 2, 2}, {uuid(0), uuid(1), uuid(0), uuid(1)}, "mpi"));
  EXPECT_EQ(two.gpu, 1);
}

TEST(DeviceChoice, SomeRanksWithoutAGpuAreNamed) {
  const DeviceChoice c = choose_device(host("auto", 0, {1, 0, 1, 0}, {uuid(0), "", uuid(2), ""}));
  EXPECT_EQ(c.device, "cpu");
  EXPECT_TRUE(c.warn);
  EXPECT_TRUE(contains(c.reason, "local ranks 1, 3 of node7 see no GPU while the others do")) << c.reason;
  const DeviceChoice cuda = choose_device(host("cuda", 0, {1, 0, 1, 0}, {uuid(0), "", uuid(2), ""}));
  EXPECT_FALSE(cuda.error.empty());
}

TEST(DeviceChoice, AHostWithoutGpusTrainsOnTheCpuAndSaysSo) {
  const DeviceChoice c = choose_device(host("auto", 0, {0, 0}, {"", ""}));
  EXPECT_EQ(c.device, "cpu");
  EXPECT_FALSE(c.warn);
  EXPECT_TRUE(contains(c.reason, "no GPU is visible on node7")) << c.reason;
  DeviceFacts no_driver = host("cuda", 0, {0, 0}, {"", ""});
  no_driver.cuda_error = "cudaGetDeviceCount: cudaErrorInsufficientDriver";
  const DeviceChoice cuda = choose_device(no_driver);
  EXPECT_TRUE(contains(cuda.error, "no rank on node7 sees a GPU (cudaGetDeviceCount: cudaErrorInsufficientDriver, "
                                   "CUDA_VISIBLE_DEVICES unset)"))
      << cuda.error;
}

TEST(DeviceChoice, CpuAsAskedAndBuildsWithoutCuda) {
  const DeviceChoice cpu = choose_device(host("cpu", 0, {8}, {uuid(0)}));
  EXPECT_EQ(cpu.device, "cpu");
  EXPECT_TRUE(contains(cpu.reason, "train.device: cpu")) << cpu.reason;
  DeviceFacts no_cuda = host("auto", 0, {0}, {""});
  no_cuda.build_has_cuda = false;
  EXPECT_TRUE(contains(choose_device(no_cuda).reason, "no CUDA backend")) << choose_device(no_cuda).reason;
  no_cuda.want = "cuda";
  EXPECT_TRUE(contains(choose_device(no_cuda).error, "rebuild")) << choose_device(no_cuda).error;
}

TEST(DeviceChoice, UuidsPrintAsNvidiaSmiDoes) {
  unsigned char b[16];
  for (int i = 0; i < 16; ++i) b[i] = static_cast<unsigned char>(0x10 * (i % 16) + i);
  EXPECT_EQ(format_gpu_uuid(b), "GPU-00112233-4455-6677-8899-aabbccddeeff");
}

}  // namespace
}  // namespace dytrain
