#include "backend/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/linear.h"
#include "backend/cpu/ops.h"
#include "common/check.h"

namespace kiln::cpu {
namespace {

std::vector<float> ToFloat(const Tensor& t) {
  std::vector<float> v;
  if (t.defined()) v = t.ToFloatVector();
  return v;
}

}  // namespace

CpuWeights CpuWeights::FromModel(const LlamaModel& model) {
  CpuWeights w;
  w.embed = ToFloat(model.embed_tokens);
  w.linears.resize(static_cast<size_t>(model.num_linears()));
  for (int id = 0; id < model.num_linears(); ++id) {
    const LinearWeight& src = model.linear(id);
    Linear& dst = w.linears[static_cast<size_t>(id)];
    if (&src == &model.lm_head && model.tied_lm_head) {
      dst.data = w.embed.data();
      continue;
    }
    dst.w.resize(static_cast<size_t>(src.out_features * src.in_features));
    src.DequantizeRows(0, src.out_features, dst.w.data());
    dst.data = dst.w.data();
    if (src.quant.format == WeightFormat::kFp8E4M3) {
      dst.fp8_input = true;
      dst.fp8_scheme = quant::ActivationSchemeFor(src);
    }
    if (src.has_bias()) {
      dst.bias.assign(static_cast<size_t>(src.out_features), 0.0f);
      int64_t row = 0;
      for (const LinearWeight::Part& p : src.parts) {
        if (p.bias.defined()) p.bias.ToFloat(0, p.rows(), dst.bias.data() + row);
        row += p.rows();
      }
    }
  }
  w.norms.resize(static_cast<size_t>(model.num_norms()));
  for (int id = 0; id < model.num_norms(); ++id) {
    w.norms[static_cast<size_t>(id)] = ToFloat(model.norm(id).weight);
  }
  return w;
}

double CpuWeights::Float32Bytes(const LlamaModel& model) {
  double elements = static_cast<double>(model.embed_tokens.numel());
  for (int id = 0; id < model.num_linears(); ++id) {
    const LinearWeight& l = model.linear(id);
    if (&l == &model.lm_head && model.tied_lm_head) continue;
    elements += static_cast<double>(l.out_features) * static_cast<double>(l.in_features);
  }
  for (int id = 0; id < model.num_norms(); ++id) {
    elements += static_cast<double>(model.norm(id).weight.numel());
  }
  return 4.0 * elements;
}

void CpuOps::BeginStep(const ForwardBatch& batch, const std::vector<int32_t>& token_ids,
                       std::vector<float>* logits, std::vector<float>* hidden) {
  batch_ = &batch;
  token_ids_ = &token_ids;
  logits_ = logits;
  hidden_ = hidden;
  n_ = batch.num_tokens();
  const ModelShape& s = model_.shape;
  const size_t n = static_cast<size_t>(n_);
  residual_.resize(n * s.hidden_size);
  sublayer_.resize(n * s.hidden_size);
  normed_.resize(n * s.hidden_size);
  qkv_.resize(n * s.qkv_size());
  attn_.resize(n * s.q_size());
  gate_up_.resize(n * 2 * s.intermediate_size);
  act_.resize(n * s.intermediate_size);
  q_.resize(n * s.q_size());
  k_.resize(n * s.kv_size());
  v_.resize(n * s.kv_size());
}

std::vector<float>& CpuOps::Buffer(Act act) {
  switch (act) {
    case Act::kResidual:
      return residual_;
    case Act::kSublayer:
      return sublayer_;
    case Act::kNormed:
      return normed_;
    case Act::kQkv:
      return qkv_;
    case Act::kAttn:
      return attn_;
    case Act::kGateUp:
      return gate_up_;
    case Act::kMlpAct:
      return act_;
  }
  KILN_CHECK(false) << "unknown activation";
  return residual_;
}

Status CpuOps::Embed(const Tensor&) {
  EmbeddingGather(token_ids_->data(), n_, weights_.embed.data(), model_.shape.hidden_size,
                  residual_.data());
  return Status::Ok();
}

Status CpuOps::AddRmsNorm(const NormWeight& norm, bool add_sublayer) {
  const ModelShape& s = model_.shape;
  const float* w = weights_.norms[static_cast<size_t>(norm.id)].data();
  if (add_sublayer) {
    cpu::AddRmsNorm(residual_.data(), sublayer_.data(), w, n_, s.hidden_size, s.rms_norm_eps,
                    normed_.data());
  } else {
    RmsNorm(residual_.data(), w, n_, s.hidden_size, s.rms_norm_eps, normed_.data());
  }
  return Status::Ok();
}

Status CpuOps::Linear(const LinearWeight& w, Act in, Act out) {
  const CpuWeights::Linear& l = weights_.linears[static_cast<size_t>(w.id)];
  const int k = static_cast<int>(w.in_features), m = static_cast<int>(w.out_features);
  float* y = Buffer(out).data();
  const float* x = Buffer(in).data();
  if (l.fp8_input) {  // W8A8: y = dequant(quant(x)) · dequant(W)^T
    fp8_input_.assign(x, x + static_cast<size_t>(n_) * k);
    quant::RoundTripActivationsFp8(fp8_input_.data(), n_, k, l.fp8_scheme);
    x = fp8_input_.data();
  }
  LinearRows(x, n_, k, l.data, m, y, num_threads_);
  if (!l.bias.empty()) {
    for (int t = 0; t < n_; ++t) {
      for (int j = 0; j < m; ++j) y[static_cast<int64_t>(t) * m + j] += l.bias[j];
    }
  }
  return Status::Ok();
}

Status CpuOps::ApplyRopeKvWrite(const RopeKvWrite& rope) {
  const ModelShape& s = model_.shape;
  const int q_size = s.q_size(), kv_size = s.kv_size(), row = s.qkv_size();
  for (int t = 0; t < n_; ++t) {
    const float* src = qkv_.data() + static_cast<int64_t>(t) * row;
    std::copy_n(src, q_size, q_.data() + static_cast<int64_t>(t) * q_size);
    std::copy_n(src + q_size, kv_size, k_.data() + static_cast<int64_t>(t) * kv_size);
    std::copy_n(src + q_size + kv_size, kv_size, v_.data() + static_cast<int64_t>(t) * kv_size);
  }
  if (rope.q_norm != nullptr && rope.q_norm->defined()) {
    HeadRmsNorm(q_.data(), weights_.norms[static_cast<size_t>(rope.q_norm->id)].data(), n_,
                s.num_heads, s.head_dim, s.rms_norm_eps);
  }
  if (rope.k_norm != nullptr && rope.k_norm->defined()) {
    HeadRmsNorm(k_.data(), weights_.norms[static_cast<size_t>(rope.k_norm->id)].data(), n_,
                s.num_kv_heads, s.head_dim, s.rms_norm_eps);
  }
  ApplyRope(q_.data(), k_.data(), batch_->positions.data(), n_, s.num_heads, s.num_kv_heads,
            s.head_dim, model_.rope.inv_freq.data(), model_.rope.attention_scaling,
            s.rope_interleaved);
  const size_t l = static_cast<size_t>(rope.layer);
  WriteKvCache(k_.data(), v_.data(), batch_->slot_mapping.data(), n_, s.num_kv_heads, s.head_dim,
               cache_.Layer(l));
  return Status::Ok();
}

Status CpuOps::Attention(int layer) {
  const ModelShape& s = model_.shape;
  const size_t l = static_cast<size_t>(layer);
  PagedAttention(q_.data(), cache_.Layer(l), *batch_, s.num_heads,
                 s.num_kv_heads, s.head_dim, block_size_,
                 1.0f / std::sqrt(static_cast<float>(s.head_dim)), attn_.data(), num_threads_);
  return Status::Ok();
}

Status CpuOps::SiluMul() {
  cpu::SiluMul(gate_up_.data(), n_, model_.shape.intermediate_size, act_.data());
  return Status::Ok();
}

Status CpuOps::Logits(const LinearWeight& lm_head) {
  const int h = model_.shape.hidden_size;
  const int rows = static_cast<int>(batch_->logits_indices.size());
  logits_->resize(static_cast<size_t>(rows) * model_.shape.vocab_size);
  if (rows == 0) return Status::Ok();
  std::vector<float> selected(static_cast<size_t>(rows) * h);
  for (int i = 0; i < rows; ++i) {
    std::copy_n(normed_.data() + static_cast<int64_t>(batch_->logits_indices[i]) * h, h,
                selected.data() + static_cast<int64_t>(i) * h);
  }
  const CpuWeights::Linear& l = weights_.linears[static_cast<size_t>(lm_head.id)];
  LinearRows(selected.data(), rows, h, l.data, static_cast<int>(lm_head.out_features),
             logits_->data(), num_threads_);
  return Status::Ok();
}

Status CpuOps::Hidden() {
  const int h = model_.shape.hidden_size;
  hidden_->resize(batch_->hidden_indices.size() * h);
  for (size_t i = 0; i < batch_->hidden_indices.size(); ++i) {
    std::copy_n(normed_.data() + static_cast<int64_t>(batch_->hidden_indices[i]) * h, h,
                hidden_->data() + i * h);
  }
  return Status::Ok();
}

}  // namespace kiln::cpu
