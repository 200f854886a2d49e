#include "backend/cuda/device_memory.h"

#include <algorithm>
#include <string>

#include "kernels/attention.h"

namespace kiln::cuda {

Status DeviceActivations::Allocate(const ModelShape& s, ElemType dtype, int max_tokens,
                                   int max_seqs, int max_logits, bool fp8_inputs) {
  const size_t t = static_cast<size_t>(max_tokens), elem = ElemSize(dtype);
  KILN_RETURN_IF_ERROR(sublayer.Allocate(t * s.hidden_size * elem));
  KILN_RETURN_IF_ERROR(residual.Allocate(t * s.hidden_size * elem));
  KILN_RETURN_IF_ERROR(residual2.Allocate(s.hidden_size * elem));
  KILN_RETURN_IF_ERROR(normed.Allocate(t * s.hidden_size * elem));
  KILN_RETURN_IF_ERROR(qkv.Allocate(t * s.qkv_size() * elem));
  KILN_RETURN_IF_ERROR(attn.Allocate(t * s.q_size() * elem));
  KILN_RETURN_IF_ERROR(gate_up.Allocate(t * 2 * s.intermediate_size * elem));
  KILN_RETURN_IF_ERROR(act.Allocate(t * s.intermediate_size * elem));
  KILN_RETURN_IF_ERROR(lm_in.Allocate(static_cast<size_t>(max_logits) * s.hidden_size * elem));
  KILN_RETURN_IF_ERROR(
      logits.Allocate(static_cast<size_t>(max_logits) * s.vocab_size * sizeof(float)));
  KILN_RETURN_IF_ERROR(hidden_out.Allocate(t * s.hidden_size * sizeof(float)));
  KILN_RETURN_IF_ERROR(attn_workspace.Allocate(kernels::PagedAttentionWorkspaceSize(
      std::max(max_seqs, 64) * kernels::kDecodeMaxQueryLen, s.num_heads, s.head_dim,
      kernels::kMaxKvSplits)));
  if (fp8_inputs) {
    const size_t widest =
        static_cast<size_t>(std::max({s.hidden_size, s.q_size(), s.intermediate_size}));
    KILN_RETURN_IF_ERROR(xq.Allocate(t * widest));
    KILN_RETURN_IF_ERROR(x_scale.Allocate(t * sizeof(float)));
  }
  return Status::Ok();
}

double KvPool::BytesPerBlock(const ModelShape& s, ElemType dtype, int block_size) {
  return 2.0 * s.num_layers * block_size * s.kv_size() * static_cast<double>(ElemSize(dtype));
}

void KvPool::Reset() {
  buffer_.Reset();
  k_.clear();
  v_.clear();
  num_blocks_ = 0;
}

Status KvPool::Allocate(const ModelShape& s, ElemType dtype, int block_size, int64_t num_blocks) {
  Reset();
  const size_t per_layer =
      static_cast<size_t>(num_blocks) * block_size * s.kv_size() * ElemSize(dtype);
  KILN_RETURN_IF_ERROR(buffer_.Allocate(2 * per_layer * s.num_layers)
                           .WithContext("allocating " + std::to_string(num_blocks) +
                                        " KV blocks"));
  char* base = static_cast<char*>(buffer_.get());
  for (int i = 0; i < s.num_layers; ++i) {
    k_.push_back(base + (2 * static_cast<size_t>(i)) * per_layer);
    v_.push_back(base + (2 * static_cast<size_t>(i) + 1) * per_layer);
  }
  num_blocks_ = num_blocks;
  return Status::Ok();
}

}  // namespace kiln::cuda
