// CheckpointQuantization: what an HF config.json's `quantization_config` says about how the
// checkpoint's linear layers are stored, and which tensors hold their scales. Two formats:
//
//  - block FP8 (quant_method "fp8"; DeepSeek-V3 / Qwen3-FP8 / HF FineGrainedFP8):
//      {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
//       "activation_scheme": "dynamic"}
//    tensors `*.weight` F8_E4M3 and `*.weight_scale_inv` float [ceil(out/128), ceil(in/128)] (the
//    multiplier, despite the name). Without weight_block_size it is the per-tensor FP8 format
//    (`*.weight_scale` [1], and `*.input_scale` [1] when activation_scheme is "static").
//  - compressed-tensors float-quantized (quant_method "compressed-tensors", llm-compressor):
//    one config group targeting Linear whose weights are {num_bits: 8, type: "float",
//    strategy: "tensor" | "channel" | "block"}; `*.weight` F8_E4M3, `*.weight_scale` ([1],
//    [out, 1] or [ceil(out/b0), ceil(in/b1)]), and `*.input_scale` [1] when input_activations
//    are static ({strategy: "tensor", dynamic: false}).
//
// Activations without an input scale are quantized dynamically per token (per token and
// 128-column group for block weights); a config whose weight-only or per-tensor-dynamic
// activations are asked for runs that way too. Anything else (other quant_methods, E5M2, int or
// packed formats, several config groups, static activations with block weights) is
// kUnimplemented with a message naming the field; a malformed config is kInvalidArgument.
//
// Thread-safety: plain values.
#pragma once

#include <string>
#include <string_view>

#include "kiln/status.h"
#include "model/weight_quantization.h"

namespace kiln {

struct CheckpointQuantization {
  WeightQuantization weights;  // dense (the default) when config.json has no quantization_config
  std::string method;          // "" | "fp8" | "compressed-tensors"
  // The scale tensor of `<module>.weight` is `<module>.<weight_scale_name>`.
  std::string weight_scale_name;    // "weight_scale_inv" | "weight_scale"
  bool static_input_scale = false;  // every quantized module has `<module>.input_scale`
  bool quantized() const { return !weights.dense(); }
};

// Parses the quantization_config of a config.json text (dense when absent or null).
StatusOr<CheckpointQuantization> ParseQuantizationConfig(std::string_view config_json);

}  // namespace kiln
