// llama.h: the Llama / Qwen2 / Qwen3 decoder written once, for every backend.
//
// LlamaModel is the model as the backends see it: sizes per rank (ModelShape), the RoPE table,
// and every weight in the form a backend uploads — norms as NormWeight, projections as
// LinearWeight with q|k|v and gate|up fused into one weight each (linear_weight.h), lm_head as a
// LinearWeight that shares the embedding's tensor when tied. Each weight carries a dense `id`, so
// a backend keeps its device copies in a vector indexed by it (num_linears() / num_norms()).
//
// LlamaForward is the forward pass: a short sequence of calls on LayerOps, the small op interface
// each backend implements over its own activation buffers and paged KV cache. The fused forms
// (add+RMSNorm feeding a projection, RoPE + KV write after the qkv projection, SiLU·mul after
// gate_up) are ops of their own with a default that runs the primitive ops in order; a backend
// overrides them where it fuses (the CUDA backend: a GEMV with a norm prologue and a RoPE or
// SiLU·mul epilogue at batch 1, RoPE inside decode attention at larger batches). Neither backend
// knows the model's structure: adding an architecture is a new forward function here, adding a
// weight format is a new LinearWeight kind.
//
// Not responsible for: per-step shapes (the backend's ForwardBatch), memory, scheduling.
// Thread-safety: a LlamaModel is immutable once built; LlamaForward is called by the thread that
// owns the LayerOps.
#pragma once

#include <memory>
#include <vector>

#include "kiln/status.h"
#include "model/linear_weight.h"
#include "model/model_shape.h"
#include "model/rope.h"
#include "model/weights.h"

namespace kiln {

// A vector weight (RMSNorm scale) with its dense index among the model's norms.
struct NormWeight {
  Tensor weight;  // [width] (hidden_size, or head_dim for q/k norms); !defined() → absent
  int id = -1;
  bool defined() const { return weight.defined(); }
};

struct LlamaLayer {
  NormWeight input_norm;  // [hidden]
  LinearWeight qkv;       // [q_size + 2 kv_size, hidden]: parts q, k, v (+ biases)
  NormWeight q_norm;      // [head_dim] (qk_norm) or absent
  NormWeight k_norm;
  LinearWeight o;  // [hidden, q_size]
  NormWeight post_norm;
  LinearWeight gate_up;  // [2 intermediate, hidden]: parts gate, up
  LinearWeight down;     // [hidden, intermediate]
};

struct LlamaModel {
  ModelShape shape;
  RopeTable rope;
  Tensor embed_tokens;  // [vocab, hidden] (this rank's rows)
  std::vector<LlamaLayer> layers;
  NormWeight final_norm;
  LinearWeight lm_head;   // [vocab, hidden]; its one part is embed_tokens when tied
  bool tied_lm_head = false;
  WeightQuantization quant;  // how the layers' projections are stored

  int num_linears() const { return static_cast<int>(linears_.size()); }
  int num_norms() const { return static_cast<int>(norms_.size()); }
  const LinearWeight& linear(int id) const { return *linears_[static_cast<size_t>(id)]; }
  const NormWeight& norm(int id) const { return *norms_[static_cast<size_t>(id)]; }

  // Builds rank `tp_rank` of `tp_size` from loaded weights (which stay alive through the
  // tensors' storage). Errors: weights that do not match the config, tp_size > 1 (sharded weight
  // slicing is the tensor-parallel work still to come: rejected with that message).
  static StatusOr<std::shared_ptr<const LlamaModel>> Build(std::shared_ptr<const LoadedModel> model,
                                                           int tp_rank = 0, int tp_size = 1);

 private:
  std::shared_ptr<const LoadedModel> source_;
  std::vector<const LinearWeight*> linears_;  // by id
  std::vector<const NormWeight*> norms_;      // by id
};

// Activation buffers the model names; the backend owns and sizes them ([num_tokens, width]).
enum class Act : uint8_t {
  kResidual,  // [n, hidden]        the residual stream
  kSublayer,  // [n, hidden]        the last attention / MLP block's output (not yet added)
  kNormed,    // [n, hidden]        RMSNorm(residual) · weight
  kQkv,       // [n, q + 2 kv]      after the qkv projection (q, k rotated in place by RoPE)
  kAttn,      // [n, q]             attention output
  kGateUp,    // [n, 2 inter]
  kMlpAct,    // [n, inter]         SiLU(gate) · up
};

// RoPE + KV-cache write of one layer: rotates q and k of kQkv at the step's positions (after the
// per-head q/k norms when present) and stores k and v at the step's slot_mapping in layer
// `layer`'s cache.
struct RopeKvWrite {
  int layer = 0;
  const NormWeight* q_norm = nullptr;  // nullptr or absent → none
  const NormWeight* k_norm = nullptr;
};

// The op interface a backend implements for one forward step. Every op applies to all the step's
// token rows. Contracts are those of the CPU reference ops (backend/cpu/ops.h).
class LayerOps {
 public:
  virtual ~LayerOps() = default;

  // kResidual[t] = table[token_ids[t]].
  virtual Status Embed(const Tensor& table) = 0;
  // add_sublayer: kResidual += kSublayer first. Then kNormed = RmsNorm(kResidual) · norm.
  virtual Status AddRmsNorm(const NormWeight& norm, bool add_sublayer) = 0;
  // out = in · W^T (+ bias).
  virtual Status Linear(const LinearWeight& w, Act in, Act out) = 0;
  virtual Status ApplyRopeKvWrite(const RopeKvWrite& rope) = 0;
  // kAttn = causal paged attention of kQkv's q over layer `layer`'s KV cache.
  virtual Status Attention(int layer) = 0;
  // kMlpAct = SiLU(gate) · up of kGateUp.
  virtual Status SiluMul() = 0;
  // Float32 logits of the step's logits rows: kNormed[logits_indices] · lm_head^T (when any).
  virtual Status Logits(const LinearWeight& lm_head) = 0;
  // Float32 copies of kNormed[hidden_indices] (when any).
  virtual Status Hidden() = 0;

  // Fused forms. Defaults run the primitives above in order; backends override to fuse.
  // AddRmsNorm(norm) then Linear(w, kNormed, out).
  virtual Status NormLinear(const NormWeight& norm, bool add_sublayer, const LinearWeight& w,
                            Act out);
  // NormLinear(norm, qkv → kQkv) then ApplyRopeKvWrite(rope). A backend may defer the RoPE + KV
  // write into the Attention(rope.layer) that follows.
  virtual Status NormQkvRope(const NormWeight& norm, bool add_sublayer, const LinearWeight& qkv,
                             const RopeKvWrite& rope);
  // NormLinear(norm, gate_up → kGateUp) then SiluMul().
  virtual Status NormGateUpSiluMul(const NormWeight& norm, bool add_sublayer,
                                   const LinearWeight& gate_up);
};

// The forward pass of a Llama / Qwen2 / Qwen3 decoder over one step.
Status LlamaForward(const LlamaModel& model, LayerOps& ops);

}  // namespace kiln
