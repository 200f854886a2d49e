// Parity tests of kernels::Gemv (bf16 skinny GEMM for decode) against a float64 CPU reference on
// random inputs: every row count 1..kGemvMaxRows, bf16 and float32 outputs, with and without
// bias, with and without the L2 bulk prefetch, the vectorized path (in_features % 8 == 0, aligned) at tiny and Qwen2-7B widths with
// out_features not a multiple of anything, the scalar fallback (odd widths, unaligned x or ldx),
// strided outputs (padding left untouched) and the argument checks. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gemv.h"
#include "kernels/test_util.h"

namespace kiln::kernels {
namespace {

using testing::CompareClose;
using testing::DeviceBuffer;
using testing::RandomValues;
using testing::ToFloats;

struct Shape {
  int rows;
  int64_t out_features, in_features;
  int64_t ldx = 0, ldy = 0;
  int64_t x_offset = 0;  // elements; odd → x not 16-byte aligned
};

template <typename T>
class GemvTest : public testing::GpuTest {
 protected:
  // Runs one case and checks every output element (and that ldy padding stays untouched).
  void Check(const Shape& s, bool with_bias) {
    const int64_t ldx = s.ldx ? s.ldx : s.in_features;
    const int64_t ldy = s.ldy ? s.ldy : s.out_features;
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " out=" << s.out_features
                                      << " in=" << s.in_features << " ldx=" << ldx
                                      << " ldy=" << ldy << " x_offset=" << s.x_offset
                                      << " bias=" << with_bias);
    std::vector<float> xf, wf, bf;
    auto x = RandomValues<__nv_bfloat16>(s.x_offset + s.rows * ldx, 1.0f, this->rng_, &xf);
    auto w = RandomValues<__nv_bfloat16>(s.out_features * s.in_features, 1.0f, this->rng_, &wf);
    auto b = RandomValues<T>(s.out_features, 1.0f, this->rng_, &bf);
    DeviceBuffer<__nv_bfloat16> dx(x), dw(w);
    DeviceBuffer<T> db(b), dy(s.rows * ldy);

    GemvParams<T> p;
    p.x = dx.get() + s.x_offset;
    p.w = dw.get();
    p.bias = with_bias ? db.get() : nullptr;
    p.y = dy.get();
    p.rows = s.rows;
    p.out_features = s.out_features;
    p.in_features = s.in_features;
    p.ldx = s.ldx;
    p.ldy = s.ldy;
    dy.Poison();
    KILN_CUDA_OK(Gemv(p, nullptr));
    KILN_CUDA_OK(cudaDeviceSynchronize());
    Compare(s, with_bias, xf, wf, bf, ToFloats(dy.ToHost()));
  }

  void Compare(const Shape& s, bool with_bias, const std::vector<float>& xf,
               const std::vector<float>& wf, const std::vector<float>& bf,
               const std::vector<float>& y) {
    const int64_t ldx = s.ldx ? s.ldx : s.in_features;
    const int64_t ldy = s.ldy ? s.ldy : s.out_features;
    std::vector<double> want(s.rows * s.out_features);
    std::vector<float> got(want.size());
    double max_abs_sum = 0;
    for (int r = 0; r < s.rows; ++r) {
      const float* xr = xf.data() + s.x_offset + r * ldx;
      for (int64_t o = 0; o < s.out_features; ++o) {
        const float* wr = wf.data() + o * s.in_features;
        double sum = with_bias ? bf[o] : 0.0, abs_sum = 0;
        for (int64_t i = 0; i < s.in_features; ++i) {
          sum += static_cast<double>(xr[i]) * wr[i];
          abs_sum += std::fabs(static_cast<double>(xr[i]) * wr[i]);
        }
        max_abs_sum = std::max(max_abs_sum, abs_sum);
        want[r * s.out_features + o] = sum;
        got[r * s.out_features + o] = y[r * ldy + o];
      }
      for (int64_t o = s.out_features; o < ldy; ++o) {
        EXPECT_TRUE(std::isnan(y[r * ldy + o])) << "padding written at row " << r << " col " << o;
      }
    }
    // float32 accumulation: a relative error of a few 1e-7 of the sum of |products|.
    const double atol = 2e-6 * max_abs_sum + 1e-6;
    EXPECT_EQ(CompareClose(got, want, atol, testing::kRtol<T>), "");
  }
};

using OutTypes = ::testing::Types<float, __nv_bfloat16>;
TYPED_TEST_SUITE(GemvTest, OutTypes);

TYPED_TEST(GemvTest, VectorizedEveryRowCountTinyShapes) {
  for (int rows = 1; rows <= kGemvMaxRows; ++rows) {
    for (bool bias : {false, true}) {
      this->Check({rows, 37, 64}, bias);     // fewer vectors than lanes
      this->Check({rows, 133, 520}, bias);   // 65 vectors: one lane does 3
      this->Check({rows, 5, 2056}, bias);    // < one block of warps; unroll tail
    }
  }
}

TYPED_TEST(GemvTest, VectorizedQwen2Widths) {
  this->Check({1, 613, 3584}, true);
  this->Check({2, 613, 3584}, false);
  this->Check({3, 301, 18944}, false);
  this->Check({8, 77, 3584}, true);
}

TYPED_TEST(GemvTest, StridedOperandsLeavePaddingAlone) {
  this->Check({3, 45, 128, /*ldx=*/136, /*ldy=*/50}, true);
  this->Check({1, 45, 128, /*ldx=*/0, /*ldy=*/47}, false);
}

TYPED_TEST(GemvTest, ScalarFallbackOddWidthsAndAlignment) {
  for (int rows : {1, 4, 8}) {
    this->Check({rows, 29, 70}, true);                          // in_features % 8 != 0
    this->Check({rows, 29, 64, /*ldx=*/67}, false);             // ldx % 8 != 0
    this->Check({rows, 31, 64, 0, 0, /*x_offset=*/3}, true);    // x not 16-byte aligned
    this->Check({rows, 3, 1}, false);                           // in_features == 1
  }
}

TYPED_TEST(GemvTest, RejectsBadArgumentsAndIgnoresEmptyCalls) {
  using T = TypeParam;
  DeviceBuffer<__nv_bfloat16> x(9 * 64), w(16 * 64);
  DeviceBuffer<T> y(9 * 16);
  GemvParams<T> p;
  p.x = x.get();
  p.w = w.get();
  p.y = y.get();
  p.out_features = 16;
  p.in_features = 64;
  for (int rows : {-1, kGemvMaxRows + 1}) {
    p.rows = rows;
    EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue) << "rows=" << rows;
  }
  p.rows = 2;
  p.ldx = 32;  // narrower than in_features
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue);
  p.ldx = 0;
  p.ldy = 8;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue);
  p.ldy = 0;
  p.w = nullptr;
  EXPECT_EQ(Gemv(p, nullptr), cudaErrorInvalidValue);
  p.w = w.get();
  y.Poison();
  p.rows = 0;
  EXPECT_EQ(Gemv(p, nullptr), cudaSuccess);
  KILN_CUDA_OK(cudaDeviceSynchronize());
  for (float v : ToFloats(y.ToHost())) EXPECT_TRUE(std::isnan(v)) << "rows=0 wrote output";
}

}  // namespace
}  // namespace kiln::kernels
