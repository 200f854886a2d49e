// RoPE frequencies of a model: the table every backend uses for rotary position embeddings.
// Part of the model layer (not of any backend): llama.cc builds it once per model and the
// backends upload or use it as is.
//
// Thread-safety: a pure function of the config.
#pragma once

#include <vector>

#include "model/model_config.h"

namespace kiln {

// Rotary frequencies of a config: inv_freq[i] for i in [0, D/2), scaling applied (linear, dynamic,
// llama3, yarn), plus yarn's attention scaling (multiplies cos and sin; 1 otherwise).
// Dynamic NTK follows vLLM: the base is stretched once, for the longest sequence M = L * factor
// (L = max_position_embeddings), independent of the batch: base' = base * (factor * M / L -
// (factor - 1))^(D / (D - 2)) = base * (factor^2 - factor + 1)^(D / (D - 2)). HF transformers
// instead re-derives the base from the current length and keeps the unscaled base up to L, which
// a paged KV cache cannot follow (keys are rotated once, when written).
// inv_freq is computed in double, then rounded to float32 and, for a bfloat16 / float16 checkpoint
// (config.torch_dtype), to that dtype's precision: HF transformers keeps the rotary buffer in the
// model's dtype when it loads a checkpoint in its own dtype, and the references (../shared) were
// produced that way (a bf16-rounded inv_freq changes logits by ~1e-2 relative at position 100+).
// Every backend must use this table.
struct RopeTable {
  std::vector<float> inv_freq;  // [D / 2]
  float attention_scaling = 1.0f;
};
RopeTable ComputeRopeTable(const ModelConfig& config);

}  // namespace kiln
