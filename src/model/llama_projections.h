// LayerProjections: the seven linear projections of a Llama-family layer (q, k, v, o, gate, up,
// down) with their HF module names and their scales, so that code that treats every projection
// alike (loading scales, validation, quantization, writing a checkpoint) names each one once.
//
// Thread-safety: plain references into the caller's LlamaWeights::Layer.
#pragma once

#include <array>
#include <type_traits>

#include "model/weights.h"

namespace kiln {

template <typename LayerT>  // LlamaWeights::Layer or const LlamaWeights::Layer
struct ProjectionRef {
  template <typename T>
  using Ref = std::conditional_t<std::is_const_v<LayerT>, const T*, T*>;
  const char* module;      // HF module under "model.layers.N.": "self_attn.q_proj", ...
  const char* short_name;  // "q_proj", ...
  Ref<Tensor> weight;
  Ref<LlamaWeights::Layer::Scales> scales;
};

template <typename LayerT>
std::array<ProjectionRef<LayerT>, 7> LayerProjections(LayerT& l) {
  return {{{"self_attn.q_proj", "q_proj", &l.q_proj, &l.q_scales},
           {"self_attn.k_proj", "k_proj", &l.k_proj, &l.k_scales},
           {"self_attn.v_proj", "v_proj", &l.v_proj, &l.v_scales},
           {"self_attn.o_proj", "o_proj", &l.o_proj, &l.o_scales},
           {"mlp.gate_proj", "gate_proj", &l.gate_proj, &l.gate_scales},
           {"mlp.up_proj", "up_proj", &l.up_proj, &l.up_scales},
           {"mlp.down_proj", "down_proj", &l.down_proj, &l.down_scales}}};
}

}  // namespace kiln
