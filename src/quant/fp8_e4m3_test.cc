// E4M3 encoding (quant/fp8_e4m3.h) against tables derived from first principles: the 256 codes
// decoded from the format's definition, a brute-force nearest-value search with ties to the even
// code, every midpoint between neighbouring values and its float32 neighbours, and the overflow
// rules of torch.float8_e4m3fn (NaN past 464) and of the saturating form (±448).
#include "quant/fp8_e4m3.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace kiln {
namespace {

// The value of code c by the format's definition (NaN for S.1111.111).
double DecodeByDefinition(int c) {
  const int s = c >> 7, e = (c >> 3) & 0xF, m = c & 7;
  if (e == 0xF && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  return s ? -mag : mag;
}

// Positive finite codes 0x00..0x7E in increasing value.
std::vector<double> PositiveValues() {
  std::vector<double> v;
  for (int c = 0; c <= 0x7E; ++c) v.push_back(DecodeByDefinition(c));
  return v;
}

// Brute force: the saturating encoding of x, the nearest finite value with ties to the even code.
uint8_t NearestSat(float x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xFF : 0x7F;
  static const std::vector<double> values = PositiveValues();
  const double a = std::fabs(static_cast<double>(x));
  int best = 0;
  for (int c = 1; c <= 0x7E; ++c) {
    const double d = std::fabs(values[c] - a), db = std::fabs(values[best] - a);
    if (d < db || (d == db && (c & 1) == 0)) best = c;
  }
  return static_cast<uint8_t>((std::signbit(x) ? 0x80 : 0) | best);
}

// torch semantics: the same, except that |x| > 464 (past the tie with the NaN code) is NaN.
uint8_t NearestTorch(float x) {
  if (!std::isnan(x) && std::fabs(x) > 464.0f) return std::signbit(x) ? 0xFF : 0x7F;
  return NearestSat(x);
}

TEST(Fp8E4M3Test, AllCodesDecodeByDefinition) {
  EXPECT_EQ(DecodeByDefinition(0x7E), 448.0);
  EXPECT_EQ(DecodeByDefinition(0x01), std::ldexp(1.0, -9));
  EXPECT_EQ(DecodeByDefinition(0x08), std::ldexp(1.0, -6));
  for (int c = 0; c < 256; ++c) {
    const double want = DecodeByDefinition(c);
    const float got = Fp8E4M3ToFloat(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << c;  // -0 for 0x80
    }
  }
}

TEST(Fp8E4M3Test, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    const float v = static_cast<float>(DecodeByDefinition(c));
    EXPECT_EQ(Fp8E4M3FromFloat(v), c) << c;
    EXPECT_EQ(Fp8E4M3FromFloatSat(v), c) << c;
    EXPECT_EQ(RoundToFp8E4M3(v), v) << c;
  }
}

// Between every two neighbouring values: the midpoint goes to the even code, the float32 values
// just below and above it to the lower and upper neighbour. Includes the subnormal range, the
// subnormal/normal boundary and 448's tie with the NaN code (464).
TEST(Fp8E4M3Test, MidpointsTieToEvenAndNeighboursRoundToNearest) {
  const std::vector<double> v = PositiveValues();
  int checked = 0;
  for (int c = 0; c < 0x7E; ++c) {
    const float mid = static_cast<float>((v[c] + v[c + 1]) / 2);  // exact in float32
    ASSERT_EQ(static_cast<double>(mid), (v[c] + v[c + 1]) / 2);
    const int even = (c & 1) == 0 ? c : c + 1;
    for (float sign : {1.0f, -1.0f}) {
      const int s = sign < 0 ? 0x80 : 0;
      EXPECT_EQ(Fp8E4M3FromFloat(sign * mid), s | even) << c;
      EXPECT_EQ(Fp8E4M3FromFloat(sign * std::nextafter(mid, 0.0f)), s | c) << c;
      EXPECT_EQ(Fp8E4M3FromFloat(sign * std::nextafter(mid, 1e9f)), s | (c + 1)) << c;
      EXPECT_EQ(Fp8E4M3FromFloatSat(sign * mid), s | even) << c;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 2 * 0x7E);
}

TEST(Fp8E4M3Test, OverflowNanAndTinyValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // torch: 464 is the tie between 448 (0x7E, even) and the NaN code; anything past it is NaN.
  EXPECT_EQ(Fp8E4M3FromFloat(464.0f), 0x7E);
  EXPECT_EQ(Fp8E4M3FromFloat(std::nextafter(464.0f, 1e9f)), 0x7F);
  EXPECT_EQ(Fp8E4M3FromFloat(479.9f), 0x7F);
  EXPECT_EQ(Fp8E4M3FromFloat(1e6f), 0x7F);
  EXPECT_EQ(Fp8E4M3FromFloat(-1e6f), 0xFF);
  EXPECT_EQ(Fp8E4M3FromFloat(inf), 0x7F);
  EXPECT_EQ(Fp8E4M3FromFloat(-inf), 0xFF);
  EXPECT_EQ(Fp8E4M3FromFloat(nan) & 0x7F, 0x7F);
  // Saturating: ±448 for everything past the range, NaN stays NaN.
  EXPECT_EQ(Fp8E4M3FromFloatSat(470.0f), 0x7E);
  EXPECT_EQ(Fp8E4M3FromFloatSat(1e30f), 0x7E);
  EXPECT_EQ(Fp8E4M3FromFloatSat(-1e30f), 0xFE);
  EXPECT_EQ(Fp8E4M3FromFloatSat(inf), 0x7E);
  EXPECT_EQ(Fp8E4M3FromFloatSat(-inf), 0xFE);
  EXPECT_EQ(Fp8E4M3FromFloatSat(nan) & 0x7F, 0x7F);
  EXPECT_TRUE(std::isnan(RoundToFp8E4M3(nan)));
  // Below half the smallest subnormal: signed zero; float32 subnormals included.
  EXPECT_EQ(Fp8E4M3FromFloat(1e-30f), 0x00);
  EXPECT_EQ(Fp8E4M3FromFloat(-1e-30f), 0x80);
  EXPECT_EQ(Fp8E4M3FromFloat(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(Fp8E4M3FromFloat(std::ldexp(1.0f, -10)), 0x00);  // tie → even (0)
  EXPECT_EQ(Fp8E4M3FromFloat(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
  EXPECT_EQ(Fp8E4M3FromFloat(3 * std::ldexp(1.0f, -10)), 0x02);  // tie between 1 and 2 → 2
}

// A million float32 values spread over every binade E4M3 reaches (and past it), both signs,
// against the brute-force search.
TEST(Fp8E4M3Test, RandomValuesMatchBruteForce) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> expo(-14, 10);
  for (int i = 0; i < 1000000; ++i) {
    float x = std::ldexp(mant(rng), expo(rng));
    if (i & 1) x = -x;
    ASSERT_EQ(Fp8E4M3FromFloat(x), NearestTorch(x)) << x;
    ASSERT_EQ(Fp8E4M3FromFloatSat(x), NearestSat(x)) << x;
  }
}

}  // namespace
}  // namespace kiln
