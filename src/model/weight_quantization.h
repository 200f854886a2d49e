// WeightQuantization: how the linear-layer weights of a model are stored (a checkpoint's
// quantization_config) or are to be stored (--quantization, applied on the fly): the format and
// the scale granularity. Plain value types, no dependencies (weights.h and linear_weight.h both
// use them). Scale semantics are documented in linear_weight.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

enum class WeightFormat : uint8_t {
  kDense,    // F32 / F16 / BF16 storage, no scales
  kFp8E4M3,  // DType::kF8E4M3 storage
  kInt8,     // DType::kI8 storage (SmoothQuant W8A8)
  kInt4,     // two int4 per byte (weight-only, per-group scales)
};

enum class ScaleGranularity : uint8_t { kNone, kPerTensor, kPerChannel, kPerBlock, kPerGroup };

std::string_view WeightFormatName(WeightFormat format);
std::string_view ScaleGranularityName(ScaleGranularity granularity);

// How every quantized linear layer of a model is stored (from a checkpoint's quantization_config)
// or is to be stored (--quantization on the fly). Dense: format kDense, granularity kNone.
struct WeightQuantization {
  WeightFormat format = WeightFormat::kDense;
  ScaleGranularity granularity = ScaleGranularity::kNone;
  int block_out = 0;   // kPerBlock (128 for the block-FP8 format)
  int block_in = 0;    // kPerBlock
  int group_size = 0;  // kPerGroup
  bool dense() const { return format == WeightFormat::kDense; }
  // "dense", "fp8 per-channel", "fp8 block 128x128", ...
  std::string Describe() const;
  bool operator==(const WeightQuantization&) const = default;
};

}  // namespace kiln
