// FP8 E4M3 ("fn": OCP E4M3, torch.float8_e4m3fn) encoding from float32: the one definition of
// float → E4M3 rounding that the host quantizers, the CPU twins and (being host/device inline) the
// CUDA kernels share. Decoding is Fp8E4M3ToFloat in model/weights.h.
//
// Format: 1 sign, 4 exponent (bias 7), 3 mantissa bits. Normal values (1 + m/8) · 2^(e-7) for
// e in 1..15, subnormals m/8 · 2^-6 at e = 0, S.1111.111 (0x7F / 0xFF) is NaN, no infinities;
// largest finite 448 (0x7E), smallest subnormal 2^-9 (0x01).
//
// Rounding: to nearest, ties to even (on the 3-bit mantissa; in the subnormal range on the
// multiple of 2^-9), exactly like PyTorch's float → float8_e4m3fn conversion. The two functions
// differ only past the largest finite value:
//   Fp8E4M3FromFloat     torch's `x.to(torch.float8_e4m3fn)`: |x| <= 464 rounds to a finite
//                        value (464 is the tie between 448 and the NaN code and goes to 448),
//                        larger magnitudes and ±inf give NaN (sign kept), NaN gives NaN.
//   Fp8E4M3FromFloatSat  `x.clamp(-448, 448).to(torch.float8_e4m3fn)` (CUDA's __NV_SATFINITE):
//                        |x| >= 448 and ±inf give ±448; NaN gives NaN. What every quantizer uses.
// Both are bit-exact with PyTorch on every float32 input (fp8_e4m3_test checks all 256 codes, all
// midpoints between neighbours and their float32 neighbours against a brute-force nearest search,
// and tests/data/fp8/ against a table written by PyTorch when present).
//
// Thread-safety: pure functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "model/weights.h"  // KILN_HOST_DEVICE, Fp8E4M3ToFloat

namespace kiln {

inline constexpr float kFp8E4M3Max = 448.0f;

namespace fp8_internal {

// Encodes |x| (bits `abs_bits`, finite, < 480) to the 7 magnitude bits of E4M3.
KILN_HOST_DEVICE inline uint8_t EncodeMagnitude(uint32_t abs_bits, float abs_value) {
  if (abs_bits < (121u << 23)) {
    // Below 2^-6 (the smallest normal): a multiple of 2^-9. |x| · 512 is exact (power-of-two
    // scaling of a float32 that stays normal or is the same subnormal shifted); rint rounds ties
    // to even in the default rounding mode. The result 0..8 is the code itself (8 = 0x08 = 2^-6).
    return static_cast<uint8_t>(rintf(abs_value * 512.0f));
  }
  // Normal: round the 23-bit mantissa to 3 bits, ties to even (bit 20 is the kept lsb); a carry
  // out of the mantissa increments the exponent, which is what rounding up across a binade needs.
  const uint32_t lsb = (abs_bits >> 20) & 1u;
  const uint32_t rounded = (abs_bits + 0x7FFFFu + lsb) >> 20;
  return static_cast<uint8_t>(rounded - ((127u - 7u) << 3));
}

KILN_HOST_DEVICE inline uint32_t FloatBits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}

}  // namespace fp8_internal

// torch.float8_e4m3fn semantics (overflow → NaN). See the header comment.
KILN_HOST_DEVICE inline uint8_t Fp8E4M3FromFloat(float x) {
  const uint32_t bits = fp8_internal::FloatBits(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits >= 0x43F00000u) return sign | 0x7Fu;  // >= 480, inf, NaN → NaN
  return sign | fp8_internal::EncodeMagnitude(abs_bits, fabsf(x));
}

// Saturating: ±448 past the range, NaN stays NaN. See the header comment.
KILN_HOST_DEVICE inline uint8_t Fp8E4M3FromFloatSat(float x) {
  const uint32_t bits = fp8_internal::FloatBits(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return sign | 0x7Fu;   // NaN
  if (abs_bits >= 0x43E00000u) return sign | 0x7Eu;  // >= 448 (and inf) → 448
  return sign | fp8_internal::EncodeMagnitude(abs_bits, fabsf(x));
}

// The E4M3 value nearest to x with saturation: Fp8E4M3ToFloat(Fp8E4M3FromFloatSat(x)).
KILN_HOST_DEVICE inline float RoundToFp8E4M3(float x) {
  return Fp8E4M3ToFloat(Fp8E4M3FromFloatSat(x));
}

}  // namespace kiln
