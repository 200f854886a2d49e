#include "model/llama.h"

#include <utility>

namespace kiln {

Status LayerOps::NormLinear(const NormWeight& norm, bool add_sublayer, const LinearWeight& w,
                            Act out) {
  KILN_RETURN_IF_ERROR(AddRmsNorm(norm, add_sublayer));
  return Linear(w, Act::kNormed, out);
}

Status LayerOps::NormQkvRope(const NormWeight& norm, bool add_sublayer, const LinearWeight& qkv,
                             const RopeKvWrite& rope) {
  KILN_RETURN_IF_ERROR(NormLinear(norm, add_sublayer, qkv, Act::kQkv));
  return ApplyRopeKvWrite(rope);
}

Status LayerOps::NormGateUpSiluMul(const NormWeight& norm, bool add_sublayer,
                                   const LinearWeight& gate_up) {
  KILN_RETURN_IF_ERROR(NormLinear(norm, add_sublayer, gate_up, Act::kGateUp));
  return SiluMul();
}

Status LlamaForward(const LlamaModel& m, LayerOps& ops) {
  KILN_RETURN_IF_ERROR(ops.Embed(m.embed_tokens));
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LlamaLayer& layer = m.layers[i];
    const int l = static_cast<int>(i);
    const bool add = l > 0;  // the previous layer's MLP output joins the residual here
    // Attention block: residual += o(attention(rope(qkv(norm(residual))))).
    KILN_RETURN_IF_ERROR(ops.NormQkvRope(layer.input_norm, add, layer.qkv,
                                         RopeKvWrite{l, &layer.q_norm, &layer.k_norm}));
    KILN_RETURN_IF_ERROR(ops.Attention(l));
    KILN_RETURN_IF_ERROR(ops.Linear(layer.o, Act::kAttn, Act::kSublayer));
    // MLP block: residual += down(SiLU(gate) · up of norm(residual)).
    KILN_RETURN_IF_ERROR(ops.NormGateUpSiluMul(layer.post_norm, true, layer.gate_up));
    KILN_RETURN_IF_ERROR(ops.Linear(layer.down, Act::kMlpAct, Act::kSublayer));
  }
  KILN_RETURN_IF_ERROR(ops.AddRmsNorm(m.final_norm, !m.layers.empty()));
  KILN_RETURN_IF_ERROR(ops.Logits(m.lm_head));
  return ops.Hidden();
}

namespace {

LinearWeight::Part MakePart(const Tensor& weight, const Tensor& bias,
                            const LlamaWeights::Layer::Scales* scales) {
  LinearWeight::Part p;
  p.weight = weight;
  p.bias = bias;
  if (scales != nullptr) {
    p.scale = scales->weight;
    p.input_scale = scales->input;
  }
  return p;
}

bool SameTensor(const Tensor& a, const Tensor& b) {
  return a.data == b.data && a.dummy_seed == b.dummy_seed && a.dummy_fill == b.dummy_fill &&
         a.shape == b.shape;
}

}  // namespace

StatusOr<std::shared_ptr<const LlamaModel>> LlamaModel::Build(
    std::shared_ptr<const LoadedModel> loaded, int tp_rank, int tp_size) {
  if (loaded == nullptr) return Status::InvalidArgument("LlamaModel::Build: no model");
  const ModelConfig& c = loaded->config;
  KILN_ASSIGN_OR_RETURN(ModelShape shape, ModelShape::ForRank(c, tp_rank, tp_size));
  if (tp_size > 1) {
    return Status::Unimplemented("tensor parallelism (tp_size " + std::to_string(tp_size) +
                                 "): slicing weights per rank is not part of this build");
  }
  KILN_RETURN_IF_ERROR(ValidateWeights(c, loaded->weights));
  const LlamaWeights& w = loaded->weights;
  auto m = std::make_shared<LlamaModel>();
  m->shape = shape;
  m->rope = ComputeRopeTable(c);
  m->embed_tokens = w.embed_tokens;
  m->quant = w.quantization;
  const bool quantized = !w.quantization.dense();
  const int64_t h = shape.hidden_size;
  auto make_linear = [&](const std::string& name, int64_t in, std::vector<LinearWeight::Part> parts,
                         bool layer_quant) {
    LinearWeight lw;
    lw.name = name;
    lw.in_features = in;
    lw.parts = std::move(parts);
    for (const LinearWeight::Part& p : lw.parts) lw.out_features += p.rows();
    if (layer_quant) lw.quant = w.quantization;
    return lw;
  };
  m->layers.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LlamaWeights::Layer& src = w.layers[i];
    LlamaLayer& dst = m->layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    auto sc = [&](const LlamaWeights::Layer::Scales& s) { return quantized ? &s : nullptr; };
    dst.input_norm.weight = src.input_layernorm;
    dst.qkv = make_linear(p + "qkv", h,
                          {MakePart(src.q_proj, src.q_bias, sc(src.q_scales)),
                           MakePart(src.k_proj, src.k_bias, sc(src.k_scales)),
                           MakePart(src.v_proj, src.v_bias, sc(src.v_scales))},
                          true);
    dst.q_norm.weight = src.q_norm;
    dst.k_norm.weight = src.k_norm;
    dst.o = make_linear(p + "o", shape.q_size(),
                        {MakePart(src.o_proj, src.o_bias, sc(src.o_scales))}, true);
    dst.post_norm.weight = src.post_attention_layernorm;
    dst.gate_up = make_linear(p + "gate_up", h,
                              {MakePart(src.gate_proj, src.gate_bias, sc(src.gate_scales)),
                               MakePart(src.up_proj, src.up_bias, sc(src.up_scales))},
                              true);
    dst.down = make_linear(p + "down", shape.intermediate_size,
                           {MakePart(src.down_proj, src.down_bias, sc(src.down_scales))}, true);
  }
  m->final_norm.weight = w.norm;
  m->tied_lm_head = SameTensor(w.lm_head, w.embed_tokens);
  m->lm_head = make_linear("lm_head", h, {MakePart(w.lm_head, {}, nullptr)}, false);

  // Dense ids, in forward order.
  for (LlamaLayer& layer : m->layers) {
    for (NormWeight* n : {&layer.input_norm, &layer.q_norm, &layer.k_norm, &layer.post_norm}) {
      if (n->defined()) {
        n->id = static_cast<int>(m->norms_.size());
        m->norms_.push_back(n);
      }
    }
    for (LinearWeight* l : {&layer.qkv, &layer.o, &layer.gate_up, &layer.down}) {
      l->id = static_cast<int>(m->linears_.size());
      m->linears_.push_back(l);
    }
  }
  m->final_norm.id = static_cast<int>(m->norms_.size());
  m->norms_.push_back(&m->final_norm);
  m->lm_head.id = static_cast<int>(m->linears_.size());
  m->linears_.push_back(&m->lm_head);
  for (const LinearWeight* l : m->linears_) KILN_RETURN_IF_ERROR(l->Validate());
  m->source_ = std::move(loaded);
  return std::shared_ptr<const LlamaModel>(std::move(m));
}

}  // namespace kiln
