#include "backend/cuda/cuda_ops.h"

#include <cuda_bf16.h>

#include <cmath>
#include <utility>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/fp8.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"

namespace kiln::cuda {
namespace {

bool HasNorm(const NormWeight* n) { return n != nullptr && n->defined(); }

}  // namespace

CudaOps::CudaOps(const CudaOpsContext& ctx, const RunShape& run)
    : ctx_(ctx),
      run_(run),
      fuse_norm_(ctx.gemm->FusesPrologue(ctx.dtype == ElemType::kF32 ? CUDA_R_32F : CUDA_R_16BF,
                                         run.num_tokens, ctx.shape->hidden_size)),
      residual_(ctx.act->residual.get()),
      residual_spare_(ctx.act->residual2.get()) {}

cudaDataType_t CudaOps::gemm_type() const {
  return ctx_.dtype == ElemType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
}

void* CudaOps::Buffer(Act act) const {
  DeviceActivations& a = *ctx_.act;
  switch (act) {
    case Act::kResidual:
      return residual_;
    case Act::kSublayer:
      return a.sublayer.get();
    case Act::kNormed:
      return a.normed.get();
    case Act::kQkv:
      return a.qkv.get();
    case Act::kAttn:
      return a.attn.get();
    case Act::kGateUp:
      return a.gate_up.get();
    case Act::kMlpAct:
      return a.act.get();
  }
  return nullptr;
}

Status CudaOps::Embed(const Tensor&) {
  auto run = [&]<typename T>(T*) -> Status {
    kernels::EmbeddingGatherParams<T> emb;
    emb.token_ids = ctx_.meta->at<int32_t>(run_.meta.token_ids);
    emb.table = static_cast<const T*>(ctx_.weights->embed());
    emb.out = static_cast<T*>(residual_);
    emb.num_tokens = run_.num_tokens;
    emb.vocab_size = ctx_.shape->vocab_size;
    emb.hidden_size = ctx_.shape->hidden_size;
    KILN_CUDA_RETURN_IF_ERROR(kernels::EmbeddingGather(emb, ctx_.stream));
    return Status::Ok();
  };
  if (ctx_.dtype == ElemType::kF32) return run(static_cast<float*>(nullptr));
  return run(static_cast<__nv_bfloat16*>(nullptr));
}

template <typename T>
Status CudaOps::AddRmsNormT(const NormWeight& norm, bool add_sublayer) {
  kernels::RmsNormParams<T> p;
  p.x = static_cast<const T*>(add_sublayer ? ctx_.act->sublayer.get() : residual_);
  p.residual = add_sublayer ? static_cast<T*>(residual_) : nullptr;
  p.weight = static_cast<const T*>(ctx_.weights->norm(norm));
  p.out = ctx_.act->normed.as<T>();
  p.num_tokens = run_.num_tokens;
  p.hidden_size = ctx_.shape->hidden_size;
  p.eps = ctx_.shape->rms_norm_eps;
  KILN_CUDA_RETURN_IF_ERROR(kernels::RmsNorm(p, ctx_.stream));
  return Status::Ok();
}

Status CudaOps::AddRmsNorm(const NormWeight& norm, bool add_sublayer) {
  if (ctx_.dtype == ElemType::kF32) return AddRmsNormT<float>(norm, add_sublayer);
  return AddRmsNormT<__nv_bfloat16>(norm, add_sublayer);
}

Status CudaOps::Linear(const LinearWeight& w, Act in, Act out) {
  const DeviceLinear& d = ctx_.weights->linear(w);
  const cudaDataType_t gt = gemm_type();
  if (!d.fp8) {
    return ctx_.gemm->Run(gt, gt, Buffer(in), d.w, d.bias, Buffer(out), run_.num_tokens,
                          d.out_features, d.in_features, ctx_.stream);
  }
  const int n = run_.num_tokens;
  if (n <= ctx_.gemm->gemv_max_rows()) {  // decode: W8A16 GEMV over the bf16 rows
    return ctx_.gemm->RunGemvFp8(CUDA_R_16BF, Buffer(in), d.w, d.scale, d.bias, Buffer(out), n,
                                 d.out_features, d.in_features, ctx_.stream);
  }
  // W8A8: the input quantized per token, then FP8 tensor cores with outer-vector scales.
  kernels::QuantizeFp8Params q;
  q.x = Buffer(in);
  q.out = ctx_.act->xq.as<uint8_t>();
  q.scales = ctx_.act->x_scale.as<float>();
  q.rows = n;
  q.cols = d.in_features;
  KILN_CUDA_RETURN_IF_ERROR(kernels::QuantizeFp8(q, ctx_.stream));
  return ctx_.gemm->RunFp8(q.out, q.scales, d.w, d.scale, d.bias, Buffer(out), CUDA_R_16BF, n,
                           d.out_features, d.in_features, ctx_.stream);
}

template <typename T>
Status CudaOps::RopeKvWriteT(const RopeKvWrite& rope) {
  const ModelShape& s = *ctx_.shape;
  T* qkv = ctx_.act->qkv.as<T>();
  kernels::RopeKvCacheParams<T> p;
  p.q = qkv;
  p.q_stride = s.qkv_size();
  p.k = qkv + s.q_size();
  p.k_stride = s.qkv_size();
  p.v = qkv + s.q_size() + s.kv_size();
  p.v_stride = s.qkv_size();
  p.q_norm_weight = HasNorm(rope.q_norm) ? static_cast<const T*>(ctx_.weights->norm(*rope.q_norm))
                                         : nullptr;
  p.k_norm_weight = HasNorm(rope.k_norm) ? static_cast<const T*>(ctx_.weights->norm(*rope.k_norm))
                                         : nullptr;
  p.norm_eps = s.rms_norm_eps;
  p.positions = ctx_.meta->at<int32_t>(run_.meta.positions);
  p.inv_freq = ctx_.weights->inv_freq();
  p.attention_scaling = ctx_.weights->attention_scaling();
  p.interleaved = s.rope_interleaved;
  p.slot_mapping = ctx_.meta->at<int64_t>(run_.meta.slot_mapping);
  p.k_cache = static_cast<T*>(ctx_.kv->k(rope.layer));
  p.v_cache = static_cast<T*>(ctx_.kv->v(rope.layer));
  p.num_tokens = run_.num_tokens;
  p.num_heads = s.num_heads;
  p.num_kv_heads = s.num_kv_heads;
  p.head_dim = s.head_dim;
  KILN_CUDA_RETURN_IF_ERROR(kernels::RopeKvCache(p, ctx_.stream));
  return Status::Ok();
}

Status CudaOps::ApplyRopeKvWrite(const RopeKvWrite& rope) {
  if (ctx_.dtype == ElemType::kF32) return RopeKvWriteT<float>(rope);
  return RopeKvWriteT<__nv_bfloat16>(rope);
}

template <typename T>
Status CudaOps::AttentionT(int layer) {
  const ModelShape& s = *ctx_.shape;
  T* qkv = ctx_.act->qkv.as<T>();
  kernels::PagedAttentionParams<T> at;
  at.q = qkv;
  at.q_stride = s.qkv_size();
  at.k_cache = static_cast<const T*>(ctx_.kv->k(layer));
  at.v_cache = static_cast<const T*>(ctx_.kv->v(layer));
  at.out = ctx_.act->attn.as<T>();
  at.out_stride = s.q_size();
  at.cu_seqlens_q = ctx_.meta->at<int32_t>(run_.meta.cu_seqlens_q);
  at.seq_lens = ctx_.meta->at<int32_t>(run_.meta.seq_lens);
  at.block_tables = ctx_.meta->at<int32_t>(run_.meta.block_tables);
  at.max_blocks_per_seq = run_.blocks_per_seq;
  at.num_seqs = run_.num_seqs;
  at.num_tokens = run_.num_tokens;
  at.num_heads = s.num_heads;
  at.num_kv_heads = s.num_kv_heads;
  at.head_dim = s.head_dim;
  at.block_size = ctx_.block_size;
  at.max_seqlen_q = run_.max_seqlen_q;
  at.max_seq_len = run_.max_seq_len;
  at.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  at.workspace = ctx_.act->attn_workspace.as<float>();
  at.workspace_size_bytes = ctx_.act->attn_workspace.size_bytes();
  if (rope_pending_ && pending_rope_.layer == layer) {
    rope_pending_ = false;
    at.rope.enabled = true;
    at.rope.positions = ctx_.meta->at<int32_t>(run_.meta.positions);
    at.rope.inv_freq = ctx_.weights->inv_freq();
    at.rope.attention_scaling = ctx_.weights->attention_scaling();
    at.rope.slot_mapping = ctx_.meta->at<int64_t>(run_.meta.slot_mapping);
    at.rope.k_new = qkv + s.q_size();
    at.rope.v_new = qkv + s.q_size() + s.kv_size();
    at.rope.kv_stride = s.qkv_size();
    at.rope.k_cache_out = static_cast<T*>(ctx_.kv->k(layer));
    at.rope.v_cache_out = static_cast<T*>(ctx_.kv->v(layer));
  }
  KILN_CUDA_RETURN_IF_ERROR(kernels::PagedAttention(at, ctx_.stream));
  return Status::Ok();
}

Status CudaOps::Attention(int layer) {
  if (rope_pending_ && pending_rope_.layer != layer) {
    return Status::Internal("a deferred RoPE/KV write of layer " +
                            std::to_string(pending_rope_.layer) + " met attention of layer " +
                            std::to_string(layer));
  }
  if (ctx_.dtype == ElemType::kF32) return AttentionT<float>(layer);
  return AttentionT<__nv_bfloat16>(layer);
}

template <typename T>
Status CudaOps::SiluMulT() {
  kernels::SiluMulParams<T> p;
  p.gate_up = ctx_.act->gate_up.as<T>();
  p.out = ctx_.act->act.as<T>();
  p.num_tokens = run_.num_tokens;
  p.intermediate_size = ctx_.shape->intermediate_size;
  KILN_CUDA_RETURN_IF_ERROR(kernels::SiluMul(p, ctx_.stream));
  return Status::Ok();
}

Status CudaOps::SiluMul() {
  if (ctx_.dtype == ElemType::kF32) return SiluMulT<float>();
  return SiluMulT<__nv_bfloat16>();
}

Status CudaOps::Logits(const LinearWeight& lm_head) {
  if (run_.num_logits == 0) return Status::Ok();
  const int h = ctx_.shape->hidden_size;
  const void* lm_in = ctx_.act->normed.get();
  if (!run_.logits_identity) {
    KILN_CUDA_RETURN_IF_ERROR(LaunchGatherRows(
        ctx_.act->normed.get(), ctx_.meta->at<int32_t>(run_.meta.logits_indices),
        run_.num_logits, h, ctx_.dtype, ctx_.act->lm_in.get(), ctx_.stream));
    lm_in = ctx_.act->lm_in.get();
  }
  const DeviceLinear& d = ctx_.weights->linear(lm_head);
  return ctx_.gemm->Run(gemm_type(), CUDA_R_32F, lm_in, d.w, nullptr, ctx_.act->logits.get(),
                        run_.num_logits, d.out_features, h, ctx_.stream);
}

Status CudaOps::Hidden() {
  if (run_.num_hidden == 0) return Status::Ok();
  KILN_CUDA_RETURN_IF_ERROR(LaunchGatherRowsToFloat(
      ctx_.act->normed.get(), ctx_.meta->at<int32_t>(run_.meta.hidden_indices), run_.num_hidden,
      ctx_.shape->hidden_size, ctx_.dtype, ctx_.act->hidden_out.as<float>(), ctx_.stream));
  return Status::Ok();
}

Status CudaOps::FusedNormGemv(const NormWeight& norm, bool add_sublayer, const LinearWeight& w,
                              Act out, bool silu_mul, const kernels::GemvRopeParams* rope) {
  kernels::GemvPrologueParams pro;
  pro.kind = kernels::GemvPrologue::kAddRmsNorm;
  pro.addend = add_sublayer ? ctx_.act->sublayer.as<__nv_bfloat16>() : nullptr;
  pro.residual = static_cast<const __nv_bfloat16*>(residual_);
  pro.norm_weight = static_cast<const __nv_bfloat16*>(ctx_.weights->norm(norm));
  pro.eps = ctx_.shape->rms_norm_eps;
  if (add_sublayer) {
    pro.residual_out = static_cast<__nv_bfloat16*>(residual_spare_);
    std::swap(residual_, residual_spare_);
  }
  const DeviceLinear& d = ctx_.weights->linear(w);
  return ctx_.gemm->RunPrologue(pro, d.w, d.bias, Buffer(out), d.out_features, d.in_features,
                                ctx_.stream, silu_mul, rope, d.fp8 ? d.scale : nullptr);
}

Status CudaOps::NormLinear(const NormWeight& norm, bool add_sublayer, const LinearWeight& w,
                           Act out) {
  if (fuse_norm_) return FusedNormGemv(norm, add_sublayer, w, out, false, nullptr);
  KILN_RETURN_IF_ERROR(AddRmsNorm(norm, add_sublayer));
  return Linear(w, Act::kNormed, out);
}

Status CudaOps::NormQkvRope(const NormWeight& norm, bool add_sublayer, const LinearWeight& qkv,
                            const RopeKvWrite& rope) {
  const ModelShape& s = *ctx_.shape;
  const bool plain_rope = !HasNorm(rope.q_norm) && !HasNorm(rope.k_norm) && !s.rope_interleaved;
  if (fuse_norm_) {
    // Batch 1: RoPE and the KV-cache write in the qkv GEMV's epilogue too (without q/k norms).
    kernels::GemvRopeParams fused;
    fused.enabled = plain_rope;
    fused.num_heads = s.num_heads;
    fused.num_kv_heads = s.num_kv_heads;
    fused.head_dim = s.head_dim;
    fused.positions = ctx_.meta->at<int32_t>(run_.meta.positions);
    fused.inv_freq = ctx_.weights->inv_freq();
    fused.attention_scaling = ctx_.weights->attention_scaling();
    fused.slot_mapping = ctx_.meta->at<int64_t>(run_.meta.slot_mapping);
    fused.k_cache = static_cast<__nv_bfloat16*>(ctx_.kv->k(rope.layer));
    fused.v_cache = static_cast<__nv_bfloat16*>(ctx_.kv->v(rope.layer));
    KILN_RETURN_IF_ERROR(FusedNormGemv(norm, add_sublayer, qkv, Act::kQkv, false, &fused));
    return plain_rope ? Status::Ok() : ApplyRopeKvWrite(rope);
  }
  KILN_RETURN_IF_ERROR(AddRmsNorm(norm, add_sublayer));
  KILN_RETURN_IF_ERROR(Linear(qkv, Act::kNormed, Act::kQkv));
  // Decode steps of more rows (bf16): RoPE and the KV-cache write inside the attention kernel.
  if (plain_rope && ctx_.dtype == ElemType::kBF16 &&
      kernels::PagedAttentionFusesRope(s.num_heads, s.num_kv_heads, s.head_dim,
                                       run_.max_seqlen_q)) {
    rope_pending_ = true;
    pending_rope_ = rope;
    return Status::Ok();
  }
  return ApplyRopeKvWrite(rope);
}

Status CudaOps::NormGateUpSiluMul(const NormWeight& norm, bool add_sublayer,
                                  const LinearWeight& gate_up) {
  if (fuse_norm_) return FusedNormGemv(norm, add_sublayer, gate_up, Act::kMlpAct, true, nullptr);
  KILN_RETURN_IF_ERROR(AddRmsNorm(norm, add_sublayer));
  KILN_RETURN_IF_ERROR(Linear(gate_up, Act::kNormed, Act::kGateUp));
  return SiluMul();
}

}  // namespace kiln::cuda
