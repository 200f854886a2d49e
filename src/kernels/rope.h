// The attention-input kernel: per token, optional q/k/v bias add, optional Qwen3 per-head q/k
// RMSNorm, rotary embedding of q and k, and the write of K and V into one layer's paged KV cache
// through slot_mapping. One launch replaces cpu::ApplyRope + cpu::HeadRmsNorm + cpu::WriteKvCache
// (plus the bias add, for checkpoints whose GEMM epilogue does not add it).
//
// Order per head (as HF): x (+ bias) → per-head RMSNorm * weight (if given) → rotate (q, k only).
// Everything in float32, rounded once to T. q is rotated in place; k and v are read and only the
// cache receives them (k rotated). Tokens whose slot is < 0 (padding) skip the cache write; their q
// is still rotated.
// RoPE: angle = float(pos) * inv_freq[i] (float32, as HF); c = cos(angle) * attention_scaling,
// s = sin(angle) * attention_scaling. rotate-half pairs (x[i], x[i + D/2]); interleaved pairs
// (x[2i], x[2i+1]); (a, b) → (a c - b s, b c + a s). inv_freq comes from ComputeRopeTable
// (llama3 / linear / dynamic / yarn scaling already applied).
// KV cache layout: [num_blocks, block_size, num_kv_heads, head_dim] = [num_slots, Hkv, D]; token
// t's head h goes to element (slot_mapping[t] * Hkv + h) * D.
//
// Limits: head_dim even and <= 256. Launchers are asynchronous on `stream`; T is float or
// __nv_bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::kernels {

template <typename T>
struct RopeKvCacheParams {
  T* q = nullptr;        // [num_tokens, num_heads * head_dim], rows q_stride elements apart
  int64_t q_stride = 0;
  const T* k = nullptr;  // [num_tokens, num_kv_heads * head_dim], rows k_stride apart
  int64_t k_stride = 0;
  const T* v = nullptr;  // [num_tokens, num_kv_heads * head_dim], rows v_stride apart
  int64_t v_stride = 0;
  const T* q_bias = nullptr;  // [num_heads * head_dim] or nullptr
  const T* k_bias = nullptr;  // [num_kv_heads * head_dim] or nullptr
  const T* v_bias = nullptr;  // [num_kv_heads * head_dim] or nullptr
  const T* q_norm_weight = nullptr;  // [head_dim] or nullptr (no q norm)
  const T* k_norm_weight = nullptr;  // [head_dim] or nullptr (no k norm)
  float norm_eps = 1e-6f;
  const int32_t* positions = nullptr;  // [num_tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  float attention_scaling = 1.0f;
  bool interleaved = false;
  const int64_t* slot_mapping = nullptr;  // [num_tokens]
  T* k_cache = nullptr;  // [num_slots, num_kv_heads, head_dim]
  T* v_cache = nullptr;  // [num_slots, num_kv_heads, head_dim]
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

template <typename T>
cudaError_t RopeKvCache(const RopeKvCacheParams<T>& params, cudaStream_t stream);

}  // namespace kiln::kernels
