// The CUDA backend's device memory besides the weights: the activation buffers of one step
// (sized for max_num_batched_tokens rows) and the paged KV pool (per layer K and V of
// [num_kv_blocks * block_size, num_kv_heads, head_dim], one allocation). The memory plan (how many
// KV blocks fit) is CudaBackend's: it profiles one forward and sizes the pool from what is left.
//
// Thread-safety: the backend's thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cuda/cuda_util.h"
#include "backend/cuda/device_fill.h"
#include "kiln/status.h"
#include "model/model_shape.h"

namespace kiln::cuda {

// [max_tokens, width] of the compute dtype unless noted.
struct DeviceActivations {
  DeviceBuffer sublayer, residual, normed, qkv, attn, gate_up, act, lm_in;
  DeviceBuffer residual2;   // one row: the other half of the fused batch-1 residual pair
  DeviceBuffer logits;      // float32 [max_logits, vocab]
  DeviceBuffer hidden_out;  // float32 [max_tokens, hidden]
  DeviceBuffer attn_workspace;
  // FP8 weights only: the input of a product quantized per token (E4M3 [max_tokens, widest
  // input]) and its scales (float32 [max_tokens]).
  DeviceBuffer xq, x_scale;

  Status Allocate(const ModelShape& shape, ElemType dtype, int max_tokens, int max_seqs,
                  int max_logits, bool fp8_inputs);
};

class KvPool final {
 public:
  // Frees the old pool first.
  Status Allocate(const ModelShape& shape, ElemType dtype, int block_size, int64_t num_blocks);
  void Reset();
  void* k(int layer) const { return k_[static_cast<size_t>(layer)]; }
  void* v(int layer) const { return v_[static_cast<size_t>(layer)]; }
  int64_t num_blocks() const { return num_blocks_; }
  size_t size_bytes() const { return buffer_.size_bytes(); }
  // Bytes one block takes over all layers (K and V).
  static double BytesPerBlock(const ModelShape& shape, ElemType dtype, int block_size);

 private:
  DeviceBuffer buffer_;
  std::vector<void*> k_, v_;
  int64_t num_blocks_ = 0;
};

}  // namespace kiln::cuda
