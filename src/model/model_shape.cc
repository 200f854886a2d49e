#include "model/model_shape.h"

namespace kiln {

StatusOr<ModelShape> ModelShape::ForRank(const ModelConfig& c, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    return Status::InvalidArgument("tensor-parallel rank " + std::to_string(rank) + " of " +
                                   std::to_string(size) + " does not exist");
  }
  auto divides = [&](int n, const char* what) -> Status {
    if (n % size != 0) {
      return Status::InvalidArgument(std::string(what) + " (" + std::to_string(n) +
                                     ") is not divisible by the tensor-parallel size " +
                                     std::to_string(size));
    }
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(divides(c.num_attention_heads, "num_attention_heads"));
  KILN_RETURN_IF_ERROR(divides(c.num_key_value_heads, "num_key_value_heads"));
  KILN_RETURN_IF_ERROR(divides(c.intermediate_size, "intermediate_size"));
  ModelShape s;
  s.tp_rank = rank;
  s.tp_size = size;
  s.num_layers = c.num_hidden_layers;
  s.hidden_size = c.hidden_size;
  s.num_heads = c.num_attention_heads / size;
  s.num_kv_heads = c.num_key_value_heads / size;
  s.head_dim = c.head_dim;
  s.intermediate_size = c.intermediate_size / size;
  const int per_rank = (c.vocab_size + size - 1) / size;
  s.vocab_begin = per_rank * rank;
  s.vocab_size = std::max(0, std::min(per_rank, c.vocab_size - s.vocab_begin));
  s.full_vocab_size = c.vocab_size;
  s.rms_norm_eps = static_cast<float>(c.rms_norm_eps);
  s.qk_norm = c.qk_norm;
  s.attention_bias = c.attention_bias;
  s.rope_interleaved = c.rope_interleaved;
  return s;
}

}  // namespace kiln
