// ModelShape: the sizes of a Llama-family decoder as one tensor-parallel rank sees them (heads,
// KV heads, intermediate and vocabulary slices), derived once from the ModelConfig. The model
// layer (llama.cc) and the backends read sizes only from here, never the full-model sizes of the
// config, so that tensor parallelism changes these numbers, not the code that uses them.
//
// Sharding rule (Megatron style): q/k/v and gate/up are split by output rows (heads, intermediate
// columns), o and down by input columns, the embedding and lm_head by vocabulary rows. With
// tp_size == 1 every slice is the whole model.
//
// Thread-safety: a plain value.
#pragma once

#include <string>

#include "kiln/status.h"
#include "model/model_config.h"

namespace kiln {

struct ModelShape {
  int tp_rank = 0;
  int tp_size = 1;
  int num_layers = 0;
  int hidden_size = 0;
  int num_heads = 0;     // this rank's query heads
  int num_kv_heads = 0;  // this rank's KV heads
  int head_dim = 0;
  int intermediate_size = 0;  // this rank's MLP columns
  int vocab_begin = 0;        // first vocabulary row of this rank's embedding / lm_head slice
  int vocab_size = 0;         // rows of that slice
  int full_vocab_size = 0;    // logits width once the slices are gathered
  float rms_norm_eps = 1e-6f;
  bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3)
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  bool rope_interleaved = false;

  int q_size() const { return num_heads * head_dim; }
  int kv_size() const { return num_kv_heads * head_dim; }
  int qkv_size() const { return q_size() + 2 * kv_size(); }

  // The shape of rank `rank` of `size`. InvalidArgument when the heads, KV heads or intermediate
  // size do not divide by `size` (KV heads are not replicated).
  static StatusOr<ModelShape> ForRank(const ModelConfig& config, int rank, int size);
};

}  // namespace kiln
