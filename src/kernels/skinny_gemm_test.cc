// Parity tests of kernels::SkinnyGemm (tensor-core bf16 GEMM for 2..64 activation rows) against a
// float64 CPU reference on random inputs: every token-tile boundary of n, bf16 and float32
// outputs, with and without bias, odd out_features, k with a partial last iteration, split-K and
// unsplit grids, the Qwen2-7B decode shapes (lm_head with float32 logits), strided x and y
// (padding and rows >= n left untouched), the argument checks, the workspace counters left at
// zero, a PDL chain bit-identical to serialized calls, and batch invariance.
//
// Why these can fail: the kernel permutes k inside each 32-wide group (skinny_gemm.cuh); if A
// and B used different permutations (e.g. b0/b1 swapped, or a vector of x taken from the wrong
// lane), every output would sum products x[i]·w[j] with i != j, an error of order sqrt(k)·E|xw|
// (~10 at k = 3,584) against a tolerance of ~4e-6 of the sum of |products| (~0.004); a dropped or
// doubled 32-wide group or split gives ~1; an unwritten element stays NaN (outputs are poisoned).
// Skips when no GPU is present.
#include "kernels/skinny_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/test_util.h"

namespace kiln::kernels {
namespace {

using testing::CompareClose;
using testing::DeviceBuffer;
using testing::RandomValues;
using testing::ToFloats;

// Output features the float64 reference checks: all of them for small products, else every
// stride-th plus the first and last 300 (every element is still checked to be written).
std::vector<int64_t> CheckedFeatures(int n, int64_t m, int64_t k) {
  constexpr double kMaxMacs = 3e8;
  const int64_t stride =
      std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(n) * m * k / kMaxMacs));
  std::vector<int64_t> out;
  for (int64_t o = 0; o < m; ++o) {
    if (o < 300 || o >= m - 300 || o % stride == 0) out.push_back(o);
  }
  return out;
}

struct Case {
  int n;
  int64_t m, k;
  bool bias = false;
  int64_t ldx = 0, ldy = 0;
};

// A zero-filled workspace large enough for every shape (the contract of skinny_gemm.h).
class Workspace {
 public:
  Workspace() : buf_(SkinnyGemmMaxWorkspaceBytes()) {
    if (buf_.get() != nullptr) cudaMemset(buf_.get(), 0, buf_.size());
  }
  void* get() const { return buf_.get(); }
  size_t size() const { return buf_.size(); }
  // The split counters (first 1,024 ints): must be zero between calls.
  std::vector<int> Counters() const {
    std::vector<int> c(1024);
    cudaMemcpy(c.data(), buf_.get(), c.size() * sizeof(int), cudaMemcpyDeviceToHost);
    return c;
  }

 private:
  DeviceBuffer<unsigned char> buf_;
};

template <typename T>
class SkinnyGemmTest : public testing::GpuTest {
 protected:
  SkinnyGemmParams<T> Params(const Case& c, const __nv_bfloat16* x, const __nv_bfloat16* w,
                             const T* bias, T* y) {
    SkinnyGemmParams<T> p;
    p.x = x;
    p.w = w;
    p.bias = c.bias ? bias : nullptr;
    p.y = y;
    p.n = c.n;
    p.m = c.m;
    p.k = c.k;
    p.ldx = c.ldx;
    p.ldy = c.ldy;
    p.workspace = ws_.get();
    p.workspace_bytes = ws_.size();
    return p;
  }

  // Runs one case and checks it; returns the raw output (n + 1 rows of ldy).
  std::vector<T> Check(const Case& c) {
    const int64_t ldx = c.ldx ? c.ldx : c.k;
    const int64_t ldy = c.ldy ? c.ldy : c.m;
    SCOPED_TRACE(::testing::Message() << "n=" << c.n << " m=" << c.m << " k=" << c.k
                                      << " ldx=" << ldx << " ldy=" << ldy << " bias=" << c.bias);
    std::vector<float> xf, wf, bf;
    auto x = RandomValues<__nv_bfloat16>(c.n * ldx, 1.0f, rng_, &xf);
    auto w = RandomValues<__nv_bfloat16>(c.m * c.k, 1.0f, rng_, &wf);
    auto b = RandomValues<T>(c.m, 1.0f, rng_, &bf);
    DeviceBuffer<__nv_bfloat16> dx(x), dw(w);
    DeviceBuffer<T> db(b), dy((c.n + 1) * ldy);  // one extra row: rows >= n stay untouched
    dy.Poison();
    EXPECT_EQ(SkinnyGemm(Params(c, dx.get(), dw.get(), db.get(), dy.get()), nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<T> raw = dy.ToHost();
    const std::vector<float> y = ToFloats(raw);

    size_t unwritten = 0, overwritten = 0;
    for (int r = 0; r <= c.n; ++r) {
      for (int64_t o = 0; o < ldy; ++o) {
        const bool inside = r < c.n && o < c.m;
        const bool is_nan = std::isnan(y[r * ldy + o]);
        unwritten += inside && is_nan;
        overwritten += !inside && !is_nan;
      }
    }
    EXPECT_EQ(unwritten, 0u) << "outputs left unwritten";
    EXPECT_EQ(overwritten, 0u) << "padding or rows >= n written";

    const std::vector<int64_t> features = CheckedFeatures(c.n, c.m, c.k);
    std::vector<double> want;
    std::vector<float> got;
    double max_abs_sum = 0;
    for (int r = 0; r < c.n; ++r) {
      const float* xr = xf.data() + r * ldx;
      for (int64_t o : features) {
        const float* wr = wf.data() + o * c.k;
        double sum = c.bias ? bf[o] : 0.0, abs_sum = 0;
        for (int64_t i = 0; i < c.k; ++i) {
          const double prod = static_cast<double>(xr[i]) * wr[i];
          sum += prod;
          abs_sum += std::fabs(prod);
        }
        max_abs_sum = std::max(max_abs_sum, abs_sum);
        want.push_back(sum);
        got.push_back(y[r * ldy + o]);
      }
    }
    // float32 accumulation (tensor-core adds, split partials): a few 1e-7 of the sum of |products|.
    const double atol = 4e-6 * max_abs_sum + 1e-6;
    EXPECT_EQ(CompareClose(got, want, atol, testing::kRtol<T>), "");
    return raw;
  }

  Workspace ws_;
};

using OutTypes = ::testing::Types<float, __nv_bfloat16>;
TYPED_TEST_SUITE(SkinnyGemmTest, OutTypes);

// n at and around every token-tile boundary (16, 32, 64) and below; m = 1001 leaves a partial tile;
// k = 1024 splits K (8 tiles) and k = 544 = 17 · 32 ends on half an iteration.
TYPED_TEST(SkinnyGemmTest, EveryTokenTileBoundary) {
  for (int n : {2, 3, 7, 8, 9, 16, 17, 31, 32, 33, 64}) {
    this->Check({n, 1001, 1024, /*bias=*/n % 2 == 1});
    this->Check({n, 37, 544, /*bias=*/n % 2 == 0});
  }
}

TYPED_TEST(SkinnyGemmTest, SmallShapesWithoutSplit) {
  for (bool bias : {false, true}) {
    this->Check({5, 37, 96, bias});   // 2 iterations, the second half empty
    this->Check({64, 16, 32, bias});  // one group of 32
    this->Check({2, 129, 64, bias});  // 2 tiles, the second with one feature
  }
}

TYPED_TEST(SkinnyGemmTest, StridedOperandsLeavePaddingAlone) {
  this->Check({3, 45, 128, true, /*ldx=*/168, /*ldy=*/50});
  this->Check({33, 1001, 1024, false, /*ldx=*/1032, /*ldy=*/1003});
}

// Qwen2-7B's decode products (qkv with bias, o, gate_up, down, lm_head); sampled features.
TYPED_TEST(SkinnyGemmTest, Qwen2Shapes) {
  this->Check({64, 4608, 3584, true});
  this->Check({3, 4608, 3584, true});
  this->Check({32, 3584, 3584, false});
  this->Check({16, 37888, 3584, false});
  this->Check({64, 3584, 18944, false});
  this->Check({9, 3584, 18944, false});
}

TYPED_TEST(SkinnyGemmTest, Qwen2LmHead) {
  this->Check({64, 152064, 3584, false});  // float32 logits as the lm_head writes them; bf16 too
}

TYPED_TEST(SkinnyGemmTest, SplitCountersLeftAtZeroAndRunsRepeatBitForBit) {
  const Case c{33, 3584, 18944, true};
  this->rng_.seed(99);
  const std::vector<TypeParam> first = this->Check(c);
  for (int v : this->ws_.Counters()) ASSERT_EQ(v, 0) << "split counter not reset";
  this->rng_.seed(99);  // the same inputs again
  const std::vector<TypeParam> second = this->Check(c);
  ASSERT_EQ(first.size(), second.size());
  EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(TypeParam)), 0);
}

// Row r of a batch gives the same bits whatever n is (the split plan ignores n).
TYPED_TEST(SkinnyGemmTest, BatchInvariant) {
  using T = TypeParam;
  const int64_t m = 3584, k = 3584;
  std::vector<float> xf, wf;
  auto x = RandomValues<__nv_bfloat16>(64 * k, 1.0f, this->rng_, &xf);
  auto w = RandomValues<__nv_bfloat16>(m * k, 1.0f, this->rng_, &wf);
  DeviceBuffer<__nv_bfloat16> dx(x), dw(w);
  std::vector<std::vector<T>> outs;
  for (int n : {3, 17, 64}) {
    DeviceBuffer<T> dy(n * m);
    const Case c{n, m, k};
    KILN_CUDA_OK(SkinnyGemm(this->Params(c, dx.get(), dw.get(), nullptr, dy.get()), nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());
    outs.push_back(dy.ToHost());
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[i].data(), 3 * m * sizeof(T)), 0)
        << "rows 0..2 differ between n=3 and the " << i << "th larger batch";
  }
}

// A chain of dependent products (each one's y is the next one's x), sharing one workspace,
// launched back to back with PDL on a stream vs with a synchronization after every call.
TEST(SkinnyGemmPdlTest, ChainMatchesSerializedLaunches) {
  if (!testing::GpuMissingReason().empty()) GTEST_SKIP() << testing::GpuMissingReason();
  using bf16 = __nv_bfloat16;
  std::mt19937 rng(7);
  const int n = 33;
  const int64_t dims[] = {1024, 3584, 1024, 2048, 1024, 4096, 1024};  // k0, m0 = k1, ...
  constexpr int kCalls = 6;
  std::vector<DeviceBuffer<bf16>> ws;
  for (int i = 0; i < kCalls; ++i) {
    std::vector<float> unused;
    // Scaled so that activations keep magnitude ~1 along the chain.
    ws.emplace_back(RandomValues<bf16>(
        dims[i + 1] * dims[i], 1.7f / std::sqrt(static_cast<float>(dims[i])), rng, &unused));
  }
  std::vector<float> unused;
  DeviceBuffer<bf16> x0(RandomValues<bf16>(n * dims[0], 1.0f, rng, &unused));
  Workspace workspace;
  cudaStream_t stream;
  KILN_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::vector<bf16> results[2];
  for (int serialized = 0; serialized < 2; ++serialized) {
    std::vector<DeviceBuffer<bf16>> acts;
    for (int i = 0; i < kCalls; ++i) acts.emplace_back(n * dims[i + 1]);
    for (int rep = 0; rep < 3; ++rep) {
      for (int i = 0; i < kCalls; ++i) {
        SkinnyGemmParams<bf16> p;
        p.x = i == 0 ? x0.get() : acts[i - 1].get();
        p.w = ws[i].get();
        p.y = acts[i].get();
        p.n = n;
        p.m = dims[i + 1];
        p.k = dims[i];
        p.workspace = workspace.get();
        p.workspace_bytes = workspace.size();
        KILN_CUDA_OK(SkinnyGemm(p, stream));
        if (serialized) KILN_CUDA_OK(cudaStreamSynchronize(stream));
      }
    }
    KILN_CUDA_OK(cudaStreamSynchronize(stream));
    results[serialized] = acts[kCalls - 1].ToHost();
    for (int v : workspace.Counters()) ASSERT_EQ(v, 0) << "split counter not reset";
  }
  KILN_CUDA_OK(cudaStreamDestroy(stream));
  size_t nonzero = 0;
  for (bf16 v : results[0]) nonzero += testing::ToHostFloat(v) != 0.0f;
  EXPECT_GT(nonzero, results[0].size() / 2) << "chain collapsed to zeros: the test is vacuous";
  EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(bf16)), 0);
}

TYPED_TEST(SkinnyGemmTest, RejectsBadArguments) {
  using T = TypeParam;
  DeviceBuffer<__nv_bfloat16> x(65 * 1024), w(3584 * 1024);
  DeviceBuffer<T> y(65 * 3584);
  y.Poison();
  const Case good{4, 3584, 1024};
  auto params = [&] { return this->Params(good, x.get(), w.get(), nullptr, y.get()); };
  ASSERT_EQ(SkinnyGemm(params(), nullptr), cudaSuccess);  // the baseline is accepted
  KILN_CUDA_OK(cudaDeviceSynchronize());
  y.Poison();
  struct Bad {
    const char* what;
    void (*edit)(SkinnyGemmParams<T>&);
  };
  const Bad bad[] = {
      {"n=1", [](SkinnyGemmParams<T>& p) { p.n = 1; }},
      {"n=65", [](SkinnyGemmParams<T>& p) { p.n = 65; }},
      {"m=0", [](SkinnyGemmParams<T>& p) { p.m = 0; }},
      {"k=48", [](SkinnyGemmParams<T>& p) { p.k = 48; }},
      {"k=0", [](SkinnyGemmParams<T>& p) { p.k = 0; }},
      {"ldx<k", [](SkinnyGemmParams<T>& p) { p.ldx = 512; }},
      {"ldx%8", [](SkinnyGemmParams<T>& p) { p.ldx = 1028; }},
      {"ldy<m", [](SkinnyGemmParams<T>& p) { p.ldy = 100; }},
      {"x unaligned", [](SkinnyGemmParams<T>& p) { p.x += 4; }},
      {"w unaligned", [](SkinnyGemmParams<T>& p) { p.w += 1; }},
      {"x null", [](SkinnyGemmParams<T>& p) { p.x = nullptr; }},
      {"w null", [](SkinnyGemmParams<T>& p) { p.w = nullptr; }},
      {"y null", [](SkinnyGemmParams<T>& p) { p.y = nullptr; }},
      {"no workspace", [](SkinnyGemmParams<T>& p) { p.workspace = nullptr; }},
      {"small workspace", [](SkinnyGemmParams<T>& p) { p.workspace_bytes = 4096; }},
      {"misaligned workspace",
       [](SkinnyGemmParams<T>& p) { p.workspace = static_cast<char*>(p.workspace) + 16; }},
      {"variant", [](SkinnyGemmParams<T>& p) { p.variant = 9; }},
  };
  for (const Bad& b : bad) {
    SkinnyGemmParams<T> p = params();
    b.edit(p);
    EXPECT_EQ(SkinnyGemm(p, nullptr), cudaErrorInvalidValue) << b.what;
  }
  KILN_CUDA_OK(cudaDeviceSynchronize());
  for (float v : ToFloats(y.ToHost())) ASSERT_TRUE(std::isnan(v)) << "a rejected call wrote y";
  // The workspace need: split shapes only.
  EXPECT_GT(SkinnyGemmWorkspaceBytes(64, 3584, 18944), 0u);
  EXPECT_LE(SkinnyGemmWorkspaceBytes(64, 3584, 18944), SkinnyGemmMaxWorkspaceBytes());
  EXPECT_EQ(SkinnyGemmWorkspaceBytes(64, 152064, 3584), 0u);
}

}  // namespace
}  // namespace kiln::kernels
