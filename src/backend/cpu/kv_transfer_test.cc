// The CPU backend's KV block transfers against the shared contract (kv_transfer_test_util.h),
// on the real stories260K checkpoint.
#include <gtest/gtest.h>

#include <fstream>
#include <tuple>

#include "backend/backend_test_util.h"
#include "backend/kv_transfer_test_util.h"
#include "model/test_data.h"

namespace kiln {
namespace {

TEST(CpuKvTransferTest, RoundTripIsBitExactAndLoadsLandWhileOthersRun) {
  const std::string path = testing::SharedPath("models/stories260K/hf");
  auto backend = testing::MakeCpuBackend(path, 16, 64, 2);
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->kv_block_record_bytes(),
            2 * backend->config().num_hidden_layers * 16 * backend->config().kv_size() * 4);
  testing::CheckKvTransferRoundTripAndLoadWhileRunning(backend.get());
}

// bf16 and E4M3 caches move their own bytes: records of 2 and 1 bytes per element, bit-exact,
// and the layout string (the tiers' key) names the element type and the FP8 scales.
TEST(CpuKvTransferTest, Bf16AndFp8CachesMoveTheirOwnBytes) {
  const std::string path = testing::SharedPath("models/stories260K/hf");
  for (auto [dtype, bytes, name] : {std::tuple<const char*, int, const char*>{"bfloat16", 2, "cpu-bf16"},
                                    {"fp8", 1, "cpu-e4m3(k_scale=0x1p+0 v_scale=0x1p+0)"}}) {
    auto backend = testing::MakeCpuBackend(path, 16, 64, 2, "", dtype);
    ASSERT_NE(backend, nullptr) << dtype;
    EXPECT_EQ(backend->kv_block_record_bytes(),
              2 * backend->config().num_hidden_layers * 16 * backend->config().kv_size() * bytes)
        << dtype;
    EXPECT_EQ(backend->kv_record_layout().rfind(name, 0), 0u) << backend->kv_record_layout();
    testing::CheckKvTransferRoundTripAndLoadWhileRunning(backend.get());
  }
}

// Regression: a host pool larger than memory threw an uncaught std::bad_alloc out of
// AllocateHostPool (kiln aborted); it is ResourceExhausted, and a smaller pool still works after.
TEST(CpuKvTransferTest, HostPoolLargerThanMemoryIsResourceExhausted) {
  int overcommit = 0;
  std::ifstream("/proc/sys/vm/overcommit_memory") >> overcommit;
  if (overcommit == 1) GTEST_SKIP() << "vm.overcommit_memory=1: the allocation would succeed";
  const std::string path = testing::SharedPath("models/stories260K/hf");
  auto backend = testing::MakeCpuBackend(path, 16, 64, 2);
  ASSERT_NE(backend, nullptr);
  // Just under the 1 TiB bound AllocateHostPool checks first: more than this machine's memory.
  const int64_t records = ((int64_t{1} << 40) - 1) / backend->kv_block_record_bytes();
  const Status s = backend->AllocateHostKvPool(records);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("cannot allocate"), std::string::npos) << s.ToString();
  EXPECT_EQ(backend->host_kv_pool(), nullptr);
  EXPECT_TRUE(backend->AllocateHostKvPool(8).ok());
  EXPECT_NE(backend->host_kv_pool(), nullptr);
}

}  // namespace
}  // namespace kiln
