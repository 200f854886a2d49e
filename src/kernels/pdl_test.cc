// Programmatic dependent launch (pdl.cuh) across the decode chain's kernels: a chain of dependent
// launches (Gemv → SiluMul → Gemv → add-RmsNorm → Gemv …, each reading the previous one's output
// and overwriting buffers that earlier launches read) gives bit-identical results when its kernels
// may overlap — launched back to back on a stream, and replayed from a captured CUDA graph — and
// when each launch is followed by a stream synchronize (no overlap possible). A kernel that read
// its input before PdlWait, or wrote before it, would see stale data and differ. Skips when no GPU
// is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/activation.h"
#include "kernels/gemv.h"
#include "kernels/rms_norm.h"
#include "kernels/test_util.h"

namespace kiln::kernels {
namespace {

using testing::DeviceBuffer;
using testing::RandomValues;

constexpr int64_t kHidden = 2048;
constexpr int64_t kInter = 4096;
constexpr int kLayers = 6;

class PdlChainTest : public testing::GpuTest {
 protected:
  void SetUp() override {
    testing::GpuTest::SetUp();
    if (IsSkipped()) return;
    std::vector<float> unused;
    x0_ = RandomValues<__nv_bfloat16>(kHidden, 1.0f, rng_, &unused);
    gate_up_ = DeviceBuffer<__nv_bfloat16>(
        RandomValues<__nv_bfloat16>(2 * kInter * kHidden, 0.05f, rng_, &unused));
    down_ = DeviceBuffer<__nv_bfloat16>(
        RandomValues<__nv_bfloat16>(kHidden * kInter, 0.05f, rng_, &unused));
    norm_ = DeviceBuffer<__nv_bfloat16>(RandomValues<__nv_bfloat16>(kHidden, 1.0f, rng_, &unused));
    x_ = DeviceBuffer<__nv_bfloat16>(kHidden);
    residual_ = DeviceBuffer<__nv_bfloat16>(kHidden);
    h_ = DeviceBuffer<__nv_bfloat16>(2 * kInter);
    act_ = DeviceBuffer<__nv_bfloat16>(kInter);
    y_ = DeviceBuffer<__nv_bfloat16>(kHidden);
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Resets the inputs, then queues the chain; with `sync_each`, synchronizes after every launch.
  void RunChain(bool sync_each) {
    ResetInputs();
    Queue(sync_each);
    KILN_CUDA_OK(cudaStreamSynchronize(stream_));
  }

  // Stream-ordered copies: the chain's first kernel then follows a non-kernel operation.
  void ResetInputs() {
    KILN_CUDA_OK(
        cudaMemcpyAsync(x_.get(), x0_.data(), kHidden * 2, cudaMemcpyHostToDevice, stream_));
    KILN_CUDA_OK(cudaMemsetAsync(residual_.get(), 0, kHidden * 2, stream_));
  }

  void Queue(bool sync_each) {
    auto step = [&](cudaError_t err) {
      ASSERT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
      if (sync_each) ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    };
    for (int layer = 0; layer < kLayers; ++layer) {
      GemvParams<__nv_bfloat16> up;
      up.x = x_.get();
      up.w = gate_up_.get();
      up.y = h_.get();
      up.rows = 1;
      up.out_features = 2 * kInter;
      up.in_features = kHidden;
      step(Gemv(up, stream_));
      SiluMulParams<__nv_bfloat16> silu;
      silu.gate_up = h_.get();
      silu.out = act_.get();
      silu.num_tokens = 1;
      silu.intermediate_size = kInter;
      step(SiluMul(silu, stream_));
      GemvParams<__nv_bfloat16> down;
      down.x = act_.get();
      down.w = down_.get();
      down.y = y_.get();
      down.rows = 1;
      down.out_features = kHidden;
      down.in_features = kInter;
      step(Gemv(down, stream_));
      RmsNormParams<__nv_bfloat16> norm;  // residual += y; x = rms_norm(residual)
      norm.x = y_.get();
      norm.residual = residual_.get();
      norm.weight = norm_.get();
      norm.out = x_.get();
      norm.num_tokens = 1;
      norm.hidden_size = static_cast<int>(kHidden);
      norm.eps = 1e-6f;
      step(RmsNorm(norm, stream_));
    }
  }

  std::vector<uint16_t> Result() const {
    const std::vector<__nv_bfloat16> host = x_.ToHost();
    std::vector<uint16_t> bits(host.size());
    std::memcpy(bits.data(), host.data(), host.size() * 2);
    return bits;
  }

  std::vector<__nv_bfloat16> x0_;
  DeviceBuffer<__nv_bfloat16> gate_up_, down_, norm_, x_, residual_, h_, act_, y_;
  cudaStream_t stream_ = nullptr;
};

TEST_F(PdlChainTest, OverlappedLaunchesAndGraphReplayMatchSerializedRun) {
  RunChain(/*sync_each=*/true);
  const std::vector<uint16_t> serialized = Result();
  float max_abs = 0.0f;
  for (__nv_bfloat16 v : x_.ToHost()) max_abs = std::max(max_abs, std::fabs(__bfloat162float(v)));
  ASSERT_GT(max_abs, 0.1f) << "the chain's output is degenerate; the comparison would be vacuous";

  for (int rep = 0; rep < 5; ++rep) {
    RunChain(/*sync_each=*/false);
    ASSERT_EQ(Result(), serialized) << "stream launches, repetition " << rep;
  }

  cudaGraph_t graph = nullptr;
  KILN_CUDA_OK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  Queue(/*sync_each=*/false);
  KILN_CUDA_OK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  KILN_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  cudaGraphDestroy(graph);
  for (int rep = 0; rep < 5; ++rep) {
    ResetInputs();
    KILN_CUDA_OK(cudaGraphLaunch(exec, stream_));
    KILN_CUDA_OK(cudaStreamSynchronize(stream_));
    EXPECT_EQ(Result(), serialized) << "graph replay " << rep;
  }
  cudaGraphExecDestroy(exec);
}

}  // namespace
}  // namespace kiln::kernels
