// The CPU backend's KV block transfers against the shared contract (kv_transfer_test_util.h),
// on the real stories260K checkpoint.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace kiln
