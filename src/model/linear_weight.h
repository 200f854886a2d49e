// LinearWeight: the weight of one linear layer (y = x · W^T + bias) as the model layer hands it
// to a backend: its storage format, its scales, an optional static input scale and an optional
// SmoothQuant smoothing vector, with bf16 / f16 / f32 as the unscaled case. Fused projections
// (q|k|v, gate|up) are one LinearWeight whose `parts` are stacked along out_features, so a
// backend uploads the parts into one contiguous [out_features, in_features] matrix without a
// host-side copy (and dummy parts keep their own seeds).
//
// Not responsible for: quantizing (src/quant/ does that, on the host for the CPU backend, on the
// device for the CUDA backend), loading (model_loader / llama.cc fill it from LlamaWeights).
//
// Scale semantics (every format): real weight = stored value × scale, where the scale that
// applies to element (o, i) is
//   kPerTensor  scale[0]                                  scale: [1]
//   kPerChannel scale[o]                                  scale: [rows]
//   kPerBlock   scale[o / block_out, i / block_in]        scale: [ceil(rows / block_out),
//                                                                 ceil(in / block_in)]
//   kPerGroup   scale[o, i / group_size]                  scale: [rows, in / group_size]
// (indices local to the part; a checkpoint's `weight_scale_inv` of the block-FP8 format is this
// multiplier despite its name). Scales are float32 or bf16 tensors (ToFloat reads either).
// input_scale (static activation scale, [1]): activations are quantized as x / input_scale;
// without it they are quantized dynamically per token. smooth ([in_features]): SmoothQuant's
// per-input-channel divisor, x / smooth before quantization (folded into W × smooth at
// calibration).
//
// Thread-safety: immutable after the model is built; shared by every thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/weight_quantization.h"
#include "model/weights.h"

namespace kiln {

struct LinearWeight {
  struct Part {
    Tensor weight;       // [rows, in_features]
    Tensor scale;        // see the header comment; !defined() for dense parts
    Tensor input_scale;  // [1] or !defined()
    Tensor bias;         // [rows] or !defined()
    int64_t rows() const { return weight.defined() ? weight.dim(0) : 0; }
  };

  std::string name;  // "layers.3.qkv", "lm_head", ... (errors and logs)
  int id = -1;       // dense index among the model's linear layers; backends key device copies by it
  int64_t in_features = 0;
  int64_t out_features = 0;  // sum of the parts' rows
  WeightQuantization quant;  // how the parts are stored
  std::vector<Part> parts;
  Tensor smooth;  // [in_features] or !defined()

  bool has_bias() const;
  bool has_input_scale() const;
  // Bytes of the stored weights (and scales) of all parts.
  size_t size_bytes() const;
  // Dense float32 copy of rows [row_begin, row_begin + num_rows) (dequantized: value × scale),
  // row-major [num_rows, in_features]. For references, the CPU backend and tests.
  void DequantizeRows(int64_t row_begin, int64_t num_rows, float* out) const;
  // Checks the parts against in/out_features and the scale shapes against `quant`; errors name
  // the layer and the part.
  Status Validate() const;
};

}  // namespace kiln
