// WriteQuantizedCheckpoint: writes a Llama-family model whose projections were quantized to FP8
// (QuantizeLlamaWeightsFp8) as an HF checkpoint directory that kiln, vLLM and HF transformers load:
//   model.safetensors  HF names; projections `*.weight` F8_E4M3 with, for block scales,
//                      `*.weight_scale_inv` float32 [ceil(out/b), ceil(in/b)] (the block-FP8
//                      format), for per-channel / per-tensor scales `*.weight_scale` float32
//                      [out, 1] / [1] (compressed-tensors); everything else as loaded (a tied
//                      lm_head is not written: HF re-ties it to model.embed_tokens.weight)
//   config.json        the source's, with quantization_config for that format
//   tokenizer.json, tokenizer_config.json, special_tokens_map.json, generation_config.json,
//   tokenizer.model, chat_template.jinja, chat_template.json, vocab.json, merges.txt,
//   added_tokens.json  copied from the source directory when present
//
// Not responsible for: quantizing (quant/fp8_quant.h). The source must be an HF directory with
// real (not dummy) weights; out_dir is created if missing and must not be the source.
//
// Thread-safety: a function over its arguments and the file system.
#pragma once

#include <string>

#include "kiln/status.h"
#include "model/weights.h"

namespace kiln::quant {

// The quantization_config JSON text written for `q` (FP8 block, per-channel or per-tensor).
StatusOr<std::string> QuantizationConfigJson(const WeightQuantization& q);

// Whether a `block`×`block` block-FP8 checkpoint of a model of this shape loads in vLLM and HF
// transformers as well as in kiln: vLLM requires every fused part but the last (q and k of
// qkv_proj, gate of gate_up_proj) and every projection's input to be whole blocks; transformers'
// FP8 kernels quantize activations in groups of `block` columns. Ok, or an error listing the sizes
// that are not multiples of `block` (kiln itself loads partial blocks).
Status CheckBlockFp8Portable(const ModelConfig& config, int block);

Status WriteQuantizedCheckpoint(const LoadedModel& source, const LlamaWeights& quantized,
                                const std::string& out_dir);

}  // namespace kiln::quant
