// ModelConfig: the architecture hyper-parameters of a Llama-family decoder (Llama 1/2/3.x,
// Qwen2/2.5, Qwen3) in one flat struct; llama.cc implements all of them through these flags.
// Parsed from an HF config.json (both the top-level rope_theta/rope_scaling style and the
// transformers-5 rope_parameters style) or from GGUF metadata. Validate() rejects absurd values
// with an error naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln {

struct RopeScaling {
  enum class Type { kNone, kLinear, kDynamic, kLlama3, kYarn };
  Type type = Type::kNone;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 0.0;  // 0 → derived
  double mscale = 0.0;            // yarn (DeepSeek style); 0 → unused
  double mscale_all_dim = 0.0;    // yarn; 0 → unused
  bool truncate = true;           // yarn: floor/ceil the correction range (HF default)
};

struct ModelConfig {
  std::string architecture;  // "llama" | "qwen2" | "qwen3"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;  // explicit (Qwen3) or hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // false: HF rotate-half (pairs i and i + head_dim/2); true: interleaved (pairs 2i, 2i+1).
  // Weights are always stored in HF layout in kiln (GGUF llama q/k are un-permuted at load), so
  // this is false for every supported checkpoint; kernels support both.
  bool rope_interleaved = false;
  // Per-dimension divisors of inv_freq ([head_dim / 2]; empty = none): GGUF files of Llama-3.x
  // store their llama3 rope scaling as this `rope_freqs` tensor instead of metadata.
  std::vector<float> rope_freq_factors;
  int max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2; Llama / Qwen3 when set)
  bool o_bias = false;          // o_proj carries a bias (attention_bias on Llama / Qwen3, not Qwen2)
  bool mlp_bias = false;        // gate/up/down projections carry a bias (config.json mlp_bias)
  bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3)
  std::string hidden_act = "silu";
  std::string torch_dtype = "float32";  // the checkpoint's dtype
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  // generation_config.json defaults (0 / negative = not given).
  float default_temperature = -1.0f;
  float default_top_p = -1.0f;
  int default_top_k = -1;
  float default_repetition_penalty = -1.0f;

  int q_size() const { return num_attention_heads * head_dim; }
  int kv_size() const { return num_key_value_heads * head_dim; }
  Status Validate() const;
};

// Parses an HF config.json text. Supported architectures (the `architectures` list, else
// `model_type`): LlamaForCausalLM / MistralForCausalLM → "llama", Qwen2ForCausalLM → "qwen2",
// Qwen3ForCausalLM → "qwen3"; anything else is kUnimplemented naming it. The result is Validate()d.
StatusOr<ModelConfig> ParseHfConfig(std::string_view config_json);
// Applies an HF generation_config.json: eos_token_id (int or list; replaces config's eos ids),
// bos_token_id, temperature, top_p, top_k, repetition_penalty.
Status ApplyGenerationConfig(std::string_view generation_config_json, ModelConfig* config);
// Reads directory/config.json and, when present, directory/generation_config.json.
StatusOr<ModelConfig> LoadHfConfig(const std::string& directory);

}  // namespace kiln
