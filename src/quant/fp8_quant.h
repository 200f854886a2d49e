// FP8 (E4M3) quantization on the host: weights into LinearWeight parts with per-tensor,
// per-output-channel or block scales; activations per token (dynamic), per token and column group
// (dynamic, the block-FP8 format's activations) or with a static input scale; the FP8 linear and
// the FP8 KV cache as CPU twins of what the GPU does. The CPU twins define the numerics the CUDA
// kernels are tested against.
//
// Scales (every granularity): scale = amax / 448 over the group's values (1.0 for an all-zero
// group), computed in float32; stored value = Fp8E4M3FromFloatSat(x / scale) (a float32 division,
// then E4M3 round-to-nearest-even, saturating); real value = Fp8E4M3ToFloat(stored) × scale. The
// CUDA kernels use the same rule (kernels/fp8.cuh: Fp8Scale, __fdiv_rn, __NV_SATFINITE), so host
// and device quantize to the same bytes.
//
// Not responsible for: choosing whether a model is quantized (options / the model layer), loading
// pre-quantized checkpoints (model_loader), the CUDA kernels (backend/cuda, kernels/).
//
// Thread-safety: pure functions; the returned tensors own their storage.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/status.h"
#include "model/linear_weight.h"
#include "model/weight_quantization.h"
#include "model/weights.h"
#include "quant/fp8_e4m3.h"

namespace kiln::quant {

// amax / 448, or 1.0 when amax is 0 (or NaN).
float Fp8ScaleForAmax(float amax);
// max |x[i]| over n values (NaN ignored).
float AbsMax(const float* x, int64_t n);

// out[i] = Fp8E4M3FromFloatSat(x[i] / scale) / out[i] = Fp8E4M3ToFloat(q[i]) * scale.
void QuantizeFp8(const float* x, int64_t n, float scale, uint8_t* out);
void DequantizeFp8(const uint8_t* q, int64_t n, float scale, float* out);
// In place: x[i] = DequantizeFp8(QuantizeFp8(x[i])) — what a value is after an FP8 round trip.
void RoundTripFp8(float* x, int64_t n, float scale);

// Tensors that own their storage (float32 data / E4M3 codes).
Tensor OwnedFloatTensor(std::vector<int64_t> shape, std::vector<float> values);
Tensor OwnedFp8Tensor(std::vector<int64_t> shape, std::vector<uint8_t> codes);

// ---- weights ------------------------------------------------------------------------------------

// FP8 E4M3 storage with `granularity` scales (kPerBlock: block × block blocks).
WeightQuantization Fp8Quantization(ScaleGranularity granularity, int block = 128);

// Quantizes a dense matrix [rows, in] (F32 / F16 / BF16, or a dummy tensor) to E4M3 with
// `target`'s granularity (kPerTensor, kPerChannel or kPerBlock with block_out × block_in blocks;
// format must be kFp8E4M3). The part's weight is F8_E4M3 [rows, in], its scale float32 in the
// shape linear_weight.h documents; bias and input_scale are left empty.
StatusOr<LinearWeight::Part> QuantizeWeightFp8(const Tensor& dense,
                                               const WeightQuantization& target);

// A dense LinearWeight quantized part by part (a fused q|k|v weight keeps one scale set per part,
// as checkpoints store them); name, id, sizes, biases and input scales are kept. Errors: `dense`
// not dense or invalid, `target` not an FP8 format this supports.
StatusOr<LinearWeight> QuantizeLinearWeightFp8(const LinearWeight& dense,
                                               const WeightQuantization& target);

// q/k/v/o/gate/up/down of every layer quantized to `target` (their Scales filled,
// `quantization` set); embeddings, norms, biases and lm_head are shared with `dense` unchanged.
StatusOr<LlamaWeights> QuantizeLlamaWeightsFp8(const LlamaWeights& dense,
                                               const WeightQuantization& target);

// ---- activations --------------------------------------------------------------------------------

// How the input of an FP8 linear layer is quantized.
struct Fp8ActivationScheme {
  enum class Kind : uint8_t {
    kPerToken,       // dynamic: one scale per row (amax of the row)
    kPerTokenGroup,  // dynamic: one scale per row and group of group_size columns (block FP8)
    kStatic,         // one given scale (a checkpoint's input_scale) for every element
  };
  Kind kind = Kind::kPerToken;
  int group_size = 0;         // kPerTokenGroup
  float static_scale = 1.0f;  // kStatic
  // Scales per row: 1 (kPerToken), ceil(in / group_size) (kPerTokenGroup), 0 (kStatic: the one
  // static scale is not repeated).
  int64_t ScalesPerRow(int64_t in) const;
};

// The scheme an FP8 LinearWeight implies: kStatic with the largest of its parts' input scales
// when it has any (vLLM does the same for fused layers), kPerTokenGroup with group_size =
// block_in for block-scaled weights (the block-FP8 format's dynamic activations), else kPerToken.
Fp8ActivationScheme ActivationSchemeFor(const LinearWeight& weight);

// Quantizes x [n, in] (row-major) into q [n, in] E4M3 codes and scales [n, ScalesPerRow(in)]
// (nothing written to `scales` for kStatic; it may be null then). The CPU twin of the per-token
// quantization the GPU fuses into RMSNorm and SiLU·mul.
void QuantizeActivationsFp8(const float* x, int64_t n, int64_t in,
                            const Fp8ActivationScheme& scheme, uint8_t* q, float* scales);
// x ← dequantize(quantize(x)) in place, with the same scales QuantizeActivationsFp8 picks.
void RoundTripActivationsFp8(float* x, int64_t n, int64_t in, const Fp8ActivationScheme& scheme);

// ---- the FP8 linear twin
// --------------------------------------------------------------------------

// y [n, out_features] = dequant(quantize(x)) · dequant(W)^T (+ bias), float32, x [n, in_features]:
// the activations quantized with ActivationSchemeFor(weight) (or `scheme` in the second form),
// the weight dequantized through its scales, the products summed in float32 in index order.
// `weight` must be FP8 (kFp8E4M3) and valid. A backend gets the same numbers (up to float32
// summation order) by dequantizing W once (LinearWeight::DequantizeRows), calling
// RoundTripActivationsFp8 on its input rows and running its ordinary float32 product.
Status Fp8Linear(const float* x, int64_t n, const LinearWeight& weight, float* y);
Status Fp8Linear(const float* x, int64_t n, const LinearWeight& weight,
                 const Fp8ActivationScheme& scheme, float* y);

// ---- the FP8 KV cache twin
// ------------------------------------------------------------------------

// Per-tensor (per layer, K and V separately) scales of an FP8 KV cache: a stored code c holds
// Fp8E4M3ToFloat(c) × scale. 1.0 when the checkpoint gives none (vLLM's default), which keeps
// |K|, |V| up to 448 finite and resolves 2^-9 near zero.
struct Fp8KvScales {
  float k_scale = 1.0f;
  float v_scale = 1.0f;
};

// Writes `n` K (or V) values into an E4M3 cache slot range: QuantizeFp8(x, n, scale, out).
inline void WriteKvFp8(const float* x, int64_t n, float scale, uint8_t* cache) {
  QuantizeFp8(x, n, scale, cache);
}
// Reads them back (attention's on-the-fly dequantization): DequantizeFp8(cache, n, scale, out).
inline void ReadKvFp8(const uint8_t* cache, int64_t n, float scale, float* out) {
  DequantizeFp8(cache, n, scale, out);
}

}  // namespace kiln::quant
