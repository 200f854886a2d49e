// GGUF → ModelConfig and LlamaWeights for the llama and qwen2 architectures (llama.cpp names:
// token_embd, blk.N.attn_{norm,q,k,v,output}, blk.N.ffn_{norm,gate,up,down}, output_norm, output).
#include <cmath>
#include <cstring>

#include "model/gguf.h"

namespace kiln {
namespace {

// Reads an optional integer key into *out (range-checked); absent leaves it.
Status OptionalInt(const GgufFile& f, const std::string& key, int* out) {
  if (f.Find(key) == nullptr) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(int64_t v, f.GetInt(key));
  if (v == 0xFFFFFFFFll) return Status::Ok();  // uint32 "none" as llama.cpp writes it
  if (v < 0 || v > (int64_t{1} << 30))
    return Status::InvalidArgument("metadata '" + key + "' out of range");
  *out = static_cast<int>(v);
  return Status::Ok();
}

Status OptionalFloat(const GgufFile& f, const std::string& key, double* out) {
  if (f.Find(key) == nullptr) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(*out, f.GetFloat(key));
  return Status::Ok();
}

StatusOr<Tensor> ToOwnedF32(const Tensor& t) {
  auto buffer = std::make_shared<std::vector<float>>(t.ToFloatVector());
  Tensor out;
  out.dtype = DType::kF32;
  out.shape = t.shape;
  out.data = buffer->data();
  out.size_bytes = buffer->size() * sizeof(float);
  out.storage = std::move(buffer);
  return out;
}

StatusOr<Tensor> Unpermuted(const Tensor& t, int num_heads, int head_dim) {
  if (t.shape.size() != 2 || t.shape[0] != static_cast<int64_t>(num_heads) * head_dim)
    return Status::InvalidArgument("q/k projection has an unexpected shape");
  KILN_ASSIGN_OR_RETURN(Tensor f32, ToOwnedF32(t));
  auto buffer = std::make_shared<std::vector<float>>(static_cast<size_t>(f32.numel()));
  UnpermuteRotaryRows(static_cast<const float*>(f32.data), num_heads, head_dim, t.shape[1],
                      buffer->data());
  f32.data = buffer->data();
  f32.storage = std::move(buffer);
  return f32;
}

}  // namespace

StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& f) {
  KILN_ASSIGN_OR_RETURN(std::string arch, f.GetString("general.architecture"));
  ModelConfig c;
  if (arch == "llama") {
    c.architecture = "llama";
  } else if (arch == "qwen2") {
    c.architecture = "qwen2";
    c.attention_bias = true;
  } else {
    return Status::Unimplemented("GGUF architecture '" + arch +
                                 "' is not supported (llama, qwen2)");
  }
  const std::string p = arch + ".";
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "embedding_length", &c.hidden_size));
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "feed_forward_length", &c.intermediate_size));
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "block_count", &c.num_hidden_layers));
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "attention.head_count", &c.num_attention_heads));
  c.num_key_value_heads = c.num_attention_heads;
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "attention.head_count_kv", &c.num_key_value_heads));
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "context_length", &c.max_position_embeddings));
  c.head_dim = c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0;
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "attention.key_length", &c.head_dim));
  int rope_dim = c.head_dim;
  KILN_RETURN_IF_ERROR(OptionalInt(f, p + "rope.dimension_count", &rope_dim));
  if (rope_dim != c.head_dim)
    return Status::Unimplemented("partial rotary (rope.dimension_count != head_dim)");
  c.rms_norm_eps = 1e-5;
  KILN_RETURN_IF_ERROR(OptionalFloat(f, p + "attention.layer_norm_rms_epsilon", &c.rms_norm_eps));
  KILN_RETURN_IF_ERROR(OptionalFloat(f, p + "rope.freq_base", &c.rope_theta));
  if (f.Find(p + "rope.scaling.type") != nullptr) {
    KILN_ASSIGN_OR_RETURN(std::string type, f.GetString(p + "rope.scaling.type"));
    if (type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::kLinear;
    } else if (type == "yarn") {
      c.rope_scaling.type = RopeScaling::Type::kYarn;
    } else if (type != "none") {
      return Status::Unimplemented("GGUF rope scaling type '" + type + "'");
    }
    KILN_RETURN_IF_ERROR(OptionalFloat(f, p + "rope.scaling.factor", &c.rope_scaling.factor));
    c.rope_scaling.original_max_position_embeddings = c.max_position_embeddings;
    KILN_RETURN_IF_ERROR(OptionalInt(f, p + "rope.scaling.original_context_length",
                                     &c.rope_scaling.original_max_position_embeddings));
  }
  if (f.FindTensor("rope_freqs.weight") != nullptr) {
    KILN_ASSIGN_OR_RETURN(Tensor freqs, f.GetTensor("rope_freqs.weight"));
    c.rope_freq_factors = freqs.ToFloatVector();
    const int half = c.head_dim / 2;
    if (static_cast<int>(c.rope_freq_factors.size()) != half) {
      return Status::InvalidArgument("rope_freqs.weight has " +
                                     std::to_string(c.rope_freq_factors.size()) +
                                     " values; head_dim / 2 = " + std::to_string(half));
    }
    for (float v : c.rope_freq_factors) {
      if (!(v > 0.0f) || !std::isfinite(v)) {
        return Status::InvalidArgument("rope_freqs.weight holds a non-positive or non-finite value");
      }
    }
  }
  const GgufTensorInfo* embd = f.FindTensor("token_embd.weight");
  if (embd == nullptr) return Status::NotFound("no tensor token_embd.weight");
  if (embd->dims.size() != 2) return Status::InvalidArgument("token_embd.weight is not a matrix");
  c.vocab_size = static_cast<int>(std::min<int64_t>(embd->dims[1], int64_t{1} << 30));
  c.tie_word_embeddings = f.FindTensor("output.weight") == nullptr;
  c.torch_dtype = "float32";
  int bos = -1, eos = -1;
  KILN_RETURN_IF_ERROR(OptionalInt(f, "tokenizer.ggml.bos_token_id", &bos));
  KILN_RETURN_IF_ERROR(OptionalInt(f, "tokenizer.ggml.eos_token_id", &eos));
  c.bos_token_id = bos;
  if (eos >= 0) c.eos_token_ids = {eos};
  KILN_RETURN_IF_ERROR(c.Validate());
  return c;
}

StatusOr<LlamaWeights> LoadGgufWeights(const GgufFile& f, const ModelConfig& c) {
  LlamaWeights w;
  KILN_ASSIGN_OR_RETURN(w.embed_tokens, f.GetTensor("token_embd.weight"));
  KILN_ASSIGN_OR_RETURN(w.norm, f.GetTensor("output_norm.weight"));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed_tokens;
  } else {
    KILN_ASSIGN_OR_RETURN(w.lm_head, f.GetTensor("output.weight"));
  }
  const bool unpermute = c.architecture == "llama";
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LlamaWeights::Layer& l = w.layers[static_cast<size_t>(i)];
    const std::string p = "blk." + std::to_string(i) + ".";
    KILN_ASSIGN_OR_RETURN(l.input_layernorm, f.GetTensor(p + "attn_norm.weight"));
    KILN_ASSIGN_OR_RETURN(l.q_proj, f.GetTensor(p + "attn_q.weight"));
    KILN_ASSIGN_OR_RETURN(l.k_proj, f.GetTensor(p + "attn_k.weight"));
    KILN_ASSIGN_OR_RETURN(l.v_proj, f.GetTensor(p + "attn_v.weight"));
    if (unpermute) {
      KILN_ASSIGN_OR_RETURN(l.q_proj, Unpermuted(l.q_proj, c.num_attention_heads, c.head_dim));
      KILN_ASSIGN_OR_RETURN(l.k_proj, Unpermuted(l.k_proj, c.num_key_value_heads, c.head_dim));
    }
    if (c.attention_bias) {
      KILN_ASSIGN_OR_RETURN(l.q_bias, f.GetTensor(p + "attn_q.bias"));
      KILN_ASSIGN_OR_RETURN(l.k_bias, f.GetTensor(p + "attn_k.bias"));
      KILN_ASSIGN_OR_RETURN(l.v_bias, f.GetTensor(p + "attn_v.bias"));
    }
    KILN_ASSIGN_OR_RETURN(l.o_proj, f.GetTensor(p + "attn_output.weight"));
    KILN_ASSIGN_OR_RETURN(l.post_attention_layernorm, f.GetTensor(p + "ffn_norm.weight"));
    KILN_ASSIGN_OR_RETURN(l.gate_proj, f.GetTensor(p + "ffn_gate.weight"));
    KILN_ASSIGN_OR_RETURN(l.up_proj, f.GetTensor(p + "ffn_up.weight"));
    KILN_ASSIGN_OR_RETURN(l.down_proj, f.GetTensor(p + "ffn_down.weight"));
  }
  return w;
}

}  // namespace kiln
