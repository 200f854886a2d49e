// Loading-side handling of quantized linear weights in LlamaWeights: reading each projection's
// scale tensors from a quantized checkpoint (see quantization_config.h for the formats),
// dequantizing them for --quantization none, and viewing one projection as a LinearWeight.
//
// Not responsible for: quantizing dense weights (src/quant/), building the model's fused
// LinearWeights (llama.cc).
//
// Thread-safety: functions over the caller's LlamaWeights.
#pragma once

#include <string>

#include "kiln/status.h"
#include "model/linear_weight.h"
#include "model/quantization_config.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace kiln {

// For every projection of every layer (`weights` already holds the checkpoint's `*.weight`
// tensors): checks it is stored as the format demands (F8_E4M3), loads `<module>.<scale name>`
// and, when the format has static activations, `<module>.input_scale` into the layer's Scales
// (shapes normalized: a scalar scale becomes [1], a per-channel [out, 1] becomes [out]) and sets
// weights->quantization. A projection left dense in a quantized checkpoint, a missing scale or a
// scale of the wrong size is an error naming the tensor.
Status LoadQuantizedProjections(const SafetensorsModel& checkpoint,
                                const CheckpointQuantization& quantization, LlamaWeights* weights);

// One projection as a single-part LinearWeight in `quantization`'s format (views, no copies).
LinearWeight ProjectionLinearWeight(const WeightQuantization& quantization, const Tensor& weight,
                                    const LlamaWeights::Layer::Scales& scales, std::string name);

// Replaces every quantized projection by its float32 dequantization (value × scale), drops the
// scales and makes weights->quantization dense. A no-op on dense weights.
Status DequantizeProjections(LlamaWeights* weights);

}  // namespace kiln
