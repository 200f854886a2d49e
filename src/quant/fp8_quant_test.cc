// The FP8 quantizers and CPU twins (quant/fp8_quant.h) against dequantize-then-multiply references
// written here independently: scales recomputed from each group's amax, codes decoded by the
// format's definition, products accumulated in double.
#include "quant/fp8_quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace kiln::quant {
namespace {

std::vector<float> RandomValues(int64_t n, uint32_t seed, float spread = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, spread);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// Value of an E4M3 code by definition (finite codes only).
double Decode(uint8_t c) {
  const int e = (c >> 3) & 0xF, m = c & 7;
  const double mag = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return (c & 0x80) ? -mag : mag;
}

// The scale that applies to element (r, c) of a quantized part, read from its scale tensor.
float ScaleAt(const LinearWeight::Part& p, const WeightQuantization& q, int64_t r, int64_t c) {
  const std::vector<float> s = p.scale.ToFloatVector();
  switch (q.granularity) {
    case ScaleGranularity::kPerTensor:
      return s[0];
    case ScaleGranularity::kPerChannel:
      return s[r];
    default:
      return s[(r / q.block_out) * p.scale.dim(1) + c / q.block_in];
  }
}

// Quantizing a [200, 300] matrix: every group's scale is its amax / 448 (so its largest element
// becomes ±448), every code is the saturating E4M3 of value / scale, and the dequantized value is
// within half an E4M3 step (1/16 relative for normal values) of the original.
void CheckWeightQuantization(ScaleGranularity g, int block, std::vector<int64_t> scale_shape) {
  const int64_t rows = 200, in = 300;
  std::vector<float> w = RandomValues(rows * in, 11, 0.05f);
  for (int64_t c = 0; c < in; ++c) w[5 * in + c] *= 30.0f;  // one row with a far larger range
  const Tensor dense = OwnedFloatTensor({rows, in}, w);
  const WeightQuantization q = Fp8Quantization(g, block);
  auto part = QuantizeWeightFp8(dense, q);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_EQ(part->weight.dtype, DType::kF8E4M3);
  EXPECT_EQ(part->weight.shape, (std::vector<int64_t>{rows, in}));
  EXPECT_EQ(part->scale.shape, scale_shape);
  const auto* codes = static_cast<const uint8_t*>(part->weight.data);
  // Independent amax per scale group.
  const std::vector<float> scales = part->scale.ToFloatVector();
  std::vector<float> amax(scales.size(), 0.0f);
  auto group = [&](int64_t r, int64_t c) -> size_t {
    if (g == ScaleGranularity::kPerTensor) return 0;
    if (g == ScaleGranularity::kPerChannel) return r;
    return (r / block) * scale_shape[1] + c / block;
  };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < in; ++c)
      amax[group(r, c)] = std::max(amax[group(r, c)], std::fabs(w[r * in + c]));
  for (size_t i = 0; i < scales.size(); ++i) EXPECT_EQ(scales[i], amax[i] / 448.0f) << i;
  std::vector<int> saw_max(scales.size(), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      const float x = w[r * in + c];
      const float s = ScaleAt(*part, q, r, c);
      const uint8_t code = codes[r * in + c];
      ASSERT_EQ(code, Fp8E4M3FromFloatSat(x / s)) << r << "," << c;
      const double deq = Decode(code) * s;
      EXPECT_LE(std::fabs(deq - x),
                std::max(std::fabs(x) / 16.0, std::ldexp(static_cast<double>(s), -10)) * 1.0001)
          << r << "," << c;
      if ((code & 0x7F) == 0x7E) saw_max[group(r, c)] = 1;
    }
  }
  for (size_t i = 0; i < scales.size(); ++i) EXPECT_EQ(saw_max[i], 1) << "group " << i;
}

TEST(Fp8QuantTest, PerTensorWeight) {
  CheckWeightQuantization(ScaleGranularity::kPerTensor, 0, {1});
}
TEST(Fp8QuantTest, PerChannelWeight) {
  CheckWeightQuantization(ScaleGranularity::kPerChannel, 0, {200});
}
// 200 × 300 in 128 × 128 blocks: a 2 × 3 grid whose last row and column of blocks are partial.
TEST(Fp8QuantTest, BlockWeightWithPartialBlocks) {
  CheckWeightQuantization(ScaleGranularity::kPerBlock, 128, {2, 3});
}

TEST(Fp8QuantTest, WeightFromBf16AndDummyAndErrors) {
  // BF16 storage: the same codes as from the float32 values it holds.
  std::vector<uint16_t> bf16 = {0x3F80, 0xBF00, 0x4120,
                                0x0000, 0x3E80, 0xC2C8};  // 1 -.5 10 0 .25 -100
  Tensor t;
  t.dtype = DType::kBF16;
  t.shape = {2, 3};
  t.data = bf16.data();
  t.size_bytes = 12;
  auto part = QuantizeWeightFp8(t, Fp8Quantization(ScaleGranularity::kPerChannel));
  ASSERT_TRUE(part.ok());
  auto f32 = QuantizeWeightFp8(OwnedFloatTensor({2, 3}, t.ToFloatVector()),
                               Fp8Quantization(ScaleGranularity::kPerChannel));
  ASSERT_TRUE(f32.ok());
  EXPECT_EQ(0, std::memcmp(part->weight.data, f32->weight.data, 6));
  EXPECT_EQ(part->scale.ToFloatVector(), (std::vector<float>{10.0f / 448, 100.0f / 448}));
  // Dummy weights quantize their DummyValue()s.
  Tensor dummy;
  dummy.dtype = DType::kBF16;
  dummy.shape = {4, 8};
  dummy.size_bytes = 64;
  dummy.dummy_fill = Tensor::DummyFill::kUniform;
  dummy.dummy_seed = 3;
  auto dq = QuantizeWeightFp8(dummy, Fp8Quantization(ScaleGranularity::kPerTensor));
  ASSERT_TRUE(dq.ok());
  const std::vector<float> values = dummy.ToFloatVector();
  const float s = dq->scale.ToFloatVector()[0];
  EXPECT_EQ(s, AbsMax(values.data(), 32) / 448.0f);
  for (int i = 0; i < 32; ++i)
    EXPECT_EQ(static_cast<const uint8_t*>(dq->weight.data)[i], Fp8E4M3FromFloatSat(values[i] / s));
  // An all-zero matrix gets scale 1, not a division by zero.
  auto zero = QuantizeWeightFp8(OwnedFloatTensor({1, 4}, {0, 0, 0, 0}),
                                Fp8Quantization(ScaleGranularity::kPerTensor));
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->scale.ToFloatVector()[0], 1.0f);
  EXPECT_EQ(zero->weight.ToFloatVector(), (std::vector<float>{0, 0, 0, 0}));
  // Errors: not FP8, not a matrix, per-group scales, already quantized input.
  EXPECT_FALSE(QuantizeWeightFp8(t, WeightQuantization{}).ok());
  EXPECT_FALSE(QuantizeWeightFp8(OwnedFloatTensor({4}, {1, 2, 3, 4}),
                                 Fp8Quantization(ScaleGranularity::kPerTensor))
                   .ok());
  EXPECT_FALSE(QuantizeWeightFp8(t, Fp8Quantization(ScaleGranularity::kPerGroup)).ok());
  EXPECT_FALSE(QuantizeWeightFp8(part->weight, Fp8Quantization(ScaleGranularity::kPerTensor)).ok());
}

// Activations: per-token scales are each row's amax / 448, per-group ones each 128-column
// group's, static ones the given scale; the round trip equals quantize-then-dequantize.
TEST(Fp8QuantTest, ActivationQuantization) {
  const int64_t n = 5, in = 300;
  std::vector<float> x = RandomValues(n * in, 5, 3.0f);
  for (int64_t c = 0; c < in; ++c) x[2 * in + c] = 0.0f;  // an all-zero token
  std::vector<uint8_t> q(x.size());
  for (auto kind : {Fp8ActivationScheme::Kind::kPerToken, Fp8ActivationScheme::Kind::kPerTokenGroup,
                    Fp8ActivationScheme::Kind::kStatic}) {
    Fp8ActivationScheme scheme;
    scheme.kind = kind;
    scheme.group_size = 128;
    scheme.static_scale = 0.02f;
    const int64_t per_row = scheme.ScalesPerRow(in);
    EXPECT_EQ(per_row, kind == Fp8ActivationScheme::Kind::kPerToken        ? 1
                       : kind == Fp8ActivationScheme::Kind::kPerTokenGroup ? 3
                                                                           : 0);
    std::vector<float> scales(static_cast<size_t>(n * std::max<int64_t>(per_row, 1)), -1.0f);
    QuantizeActivationsFp8(x.data(), n, in, scheme, q.data(), scales.data());
    std::vector<float> round_trip = x;
    RoundTripActivationsFp8(round_trip.data(), n, in, scheme);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < in; ++c) {
        float s = scheme.static_scale;
        if (kind != Fp8ActivationScheme::Kind::kStatic) {
          const int64_t c0 = kind == Fp8ActivationScheme::Kind::kPerToken ? 0 : c / 128 * 128;
          const int64_t c1 =
              kind == Fp8ActivationScheme::Kind::kPerToken ? in : std::min(in, c0 + 128);
          float amax = 0.0f;
          for (int64_t k = c0; k < c1; ++k) amax = std::max(amax, std::fabs(x[r * in + k]));
          s = amax > 0.0f ? amax / 448.0f : 1.0f;
          ASSERT_EQ(
              scales[r * per_row + c0 / (kind == Fp8ActivationScheme::Kind::kPerToken ? in : 128)],
              s);
        }
        const uint8_t code = q[r * in + c];
        ASSERT_EQ(code, Fp8E4M3FromFloatSat(x[r * in + c] / s));
        ASSERT_EQ(round_trip[r * in + c], static_cast<float>(Decode(code)) * s);
      }
    }
  }
  // Static scale 0.02 saturates values beyond 8.96.
  std::vector<float> big = {100.0f, -100.0f};
  RoundTripActivationsFp8(big.data(), 1, 2, {Fp8ActivationScheme::Kind::kStatic, 0, 0.02f});
  EXPECT_EQ(big, (std::vector<float>{448.0f * 0.02f, -448.0f * 0.02f}));
}

// y = dequant(quant(x)) · dequant(W)^T (+ bias) against double accumulation over values decoded
// here, for every weight granularity and activation scheme, with a fused three-part weight.
void CheckLinear(ScaleGranularity g, bool static_input, bool bias) {
  const int64_t n = 4, in = 256, rows[3] = {96, 32, 40};
  const WeightQuantization q = Fp8Quantization(g);
  LinearWeight dense;
  dense.name = "test.qkv";
  dense.in_features = in;
  for (int p = 0; p < 3; ++p) {
    LinearWeight::Part part;
    part.weight = OwnedFloatTensor({rows[p], in}, RandomValues(rows[p] * in, 20 + p, 0.05f));
    if (bias) part.bias = OwnedFloatTensor({rows[p]}, RandomValues(rows[p], 30 + p));
    if (static_input) part.input_scale = OwnedFloatTensor({1}, {0.01f + 0.005f * p});
    dense.parts.push_back(part);
    dense.out_features += rows[p];
  }
  auto w = QuantizeLinearWeightFp8(dense, q);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(w->Validate().ok());
  const std::vector<float> x = RandomValues(n * in, 9, 2.0f);
  std::vector<float> y(static_cast<size_t>(n * w->out_features));
  ASSERT_TRUE(Fp8Linear(x.data(), n, *w, y.data()).ok());
  const Fp8ActivationScheme scheme = ActivationSchemeFor(*w);
  EXPECT_EQ(scheme.kind, static_input ? Fp8ActivationScheme::Kind::kStatic
                         : g == ScaleGranularity::kPerBlock
                             ? Fp8ActivationScheme::Kind::kPerTokenGroup
                             : Fp8ActivationScheme::Kind::kPerToken);
  if (static_input) EXPECT_EQ(scheme.static_scale, 0.02f);  // the largest part's
  double max_err = 0, max_ref = 0;
  for (int64_t t = 0; t < n; ++t) {
    // Activations, quantized here.
    std::vector<double> xd(static_cast<size_t>(in));
    for (int64_t c = 0; c < in; ++c) {
      float s = 0.02f;
      if (!static_input) {
        const int64_t c0 = g == ScaleGranularity::kPerBlock ? c / 128 * 128 : 0;
        const int64_t c1 = g == ScaleGranularity::kPerBlock ? c0 + 128 : in;
        float amax = 0;
        for (int64_t k = c0; k < c1; ++k) amax = std::max(amax, std::fabs(x[t * in + k]));
        s = amax / 448.0f;
      }
      xd[c] = Decode(Fp8E4M3FromFloatSat(x[t * in + c] / s)) * s;
    }
    int64_t o = 0;
    for (int p = 0; p < 3; ++p) {
      const LinearWeight::Part& part = w->parts[p];
      const auto* codes = static_cast<const uint8_t*>(part.weight.data);
      for (int64_t r = 0; r < rows[p]; ++r, ++o) {
        double acc = bias ? dense.parts[p].bias.ToFloatVector()[r] : 0.0;
        for (int64_t c = 0; c < in; ++c)
          acc += xd[c] * (Decode(codes[r * in + c]) * ScaleAt(part, q, r, c));
        max_err = std::max(max_err, std::fabs(acc - y[t * w->out_features + o]));
        max_ref = std::max(max_ref, std::fabs(acc));
      }
    }
  }
  EXPECT_LE(max_err / max_ref, 1e-5);
  EXPECT_GT(max_ref, 0.1);
}

TEST(Fp8QuantTest, LinearPerTensorDynamic) {
  CheckLinear(ScaleGranularity::kPerTensor, false, true);
}
TEST(Fp8QuantTest, LinearPerTensorStaticInput) {
  CheckLinear(ScaleGranularity::kPerTensor, true, false);
}
TEST(Fp8QuantTest, LinearPerChannelDynamic) {
  CheckLinear(ScaleGranularity::kPerChannel, false, false);
}
TEST(Fp8QuantTest, LinearPerChannelStaticInput) {
  CheckLinear(ScaleGranularity::kPerChannel, true, true);
}
TEST(Fp8QuantTest, LinearBlockPerTokenGroup) {
  CheckLinear(ScaleGranularity::kPerBlock, false, false);
}

TEST(Fp8QuantTest, LinearErrors) {
  LinearWeight dense;
  dense.name = "d";
  dense.in_features = 2;
  dense.out_features = 1;
  dense.parts.push_back({OwnedFloatTensor({1, 2}, {1, 2}), {}, {}, {}});
  float x[2] = {1, 1}, y[1];
  EXPECT_EQ(Fp8Linear(x, 1, dense, y).code(), StatusCode::kInvalidArgument);  // not FP8
  auto q = QuantizeLinearWeightFp8(dense, Fp8Quantization(ScaleGranularity::kPerTensor));
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(
      QuantizeLinearWeightFp8(*q, Fp8Quantization(ScaleGranularity::kPerTensor)).ok());  // twice
  EXPECT_FALSE(
      Fp8Linear(x, 1, *q, {Fp8ActivationScheme::Kind::kStatic, 0, 0.0f}, y).ok());  // scale 0
  ASSERT_TRUE(Fp8Linear(x, 1, *q, y).ok());
  EXPECT_FLOAT_EQ(y[0], 3.0f);  // 1, 2 and 1, 1 are exact in E4M3 at these scales
}

// The KV twin: a write stores saturating E4M3 codes of x / scale, a read gives code × scale.
TEST(Fp8QuantTest, KvCacheWriteRead) {
  const float scale = 0.5f;
  std::vector<float> kv = RandomValues(1000, 3, 20.0f);
  kv[0] = 1000.0f;  // past 448 × 0.5: saturates
  std::vector<uint8_t> cache(kv.size());
  std::vector<float> back(kv.size());
  WriteKvFp8(kv.data(), 1000, scale, cache.data());
  ReadKvFp8(cache.data(), 1000, scale, back.data());
  EXPECT_EQ(back[0], 224.0f);
  for (size_t i = 0; i < kv.size(); ++i) {
    ASSERT_EQ(cache[i], Fp8E4M3FromFloatSat(kv[i] / scale));
    ASSERT_EQ(back[i], static_cast<float>(Decode(cache[i])) * scale);
    if (i > 0) ASSERT_LE(std::fabs(back[i] - kv[i]), std::max(std::fabs(kv[i]) / 16, 0.001f));
  }
  std::vector<float> in_place = kv;
  RoundTripFp8(in_place.data(), 1000, scale);
  EXPECT_EQ(in_place, back);
}

}  // namespace
}  // namespace kiln::quant
