// CPU reference operators of the Llama-family forward pass: float32, raw pointers, row-major,
// no allocation beyond small scratch. These are the specification: every CUDA kernel in
// src/kernels/ has a twin here and a parity test against it. They are deliberately simple loops
// (the CPU backend's projections are in linear.h).
//
// Shapes use n = num_tokens, h = hidden_size, H = num_heads, Hkv = num_kv_heads, D = head_dim.
// Thread-safety: pure functions of their arguments; concurrent calls on disjoint outputs are safe.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/forward_batch.h"
#include "model/model_config.h"
#include "model/rope.h"

namespace kiln::cpu {

// out[t, :] = table[token_ids[t], :].
//   token_ids: [n], each in [0, vocab_size)   table: [vocab_size, h]   out: [n, h]
void EmbeddingGather(const int32_t* token_ids, int num_tokens, const float* table, int hidden_size,
                     float* out);

// out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight   (sum of squares in float32, HF)
//   x: [n, h]   weight: [h]   out: [n, h] (may alias x)
void RmsNorm(const float* x, const float* weight, int num_tokens, int hidden_size, float eps,
             float* out);

// residual += x; out = RmsNorm(residual).
//   residual: [n, h] (in/out)   x: [n, h]   weight: [h]   out: [n, h] (may alias x)
void AddRmsNorm(float* residual, const float* x, const float* weight, int num_tokens,
                int hidden_size, float eps, float* out);


// Rotates q and k in place at their positions. angle = float(pos) * inv_freq[i] (float32, as HF);
// c = cos(angle) * attention_scaling, s = sin(angle) * attention_scaling.
// Rotate-half (interleaved = false): pairs (x[i], x[i + D/2]); interleaved: pairs (x[2i], x[2i+1]);
// (a, b) → (a c - b s, b c + a s).
//   q: [n, H, D]   k: [n, Hkv, D]   positions: [n]   inv_freq: [D / 2]
void ApplyRope(float* q, float* k, const int32_t* positions, int num_tokens, int num_heads,
               int num_kv_heads, int head_dim, const float* inv_freq, float attention_scaling,
               bool interleaved);

// Per-head RMSNorm in place (Qwen3 q_norm / k_norm): each [D] vector normalized and * weight.
//   x: [n, num_heads, D]   weight: [D]
void HeadRmsNorm(float* x, const float* weight, int num_tokens, int num_heads, int head_dim,
                 float eps);

// out[t, j] = silu(gate_up[t, j]) * gate_up[t, inter + j], silu(g) = g / (1 + exp(-g)).
//   gate_up: [n, 2 * inter] (gate | up)   out: [n, inter]
void SiluMul(const float* gate_up, int num_tokens, int intermediate_size, float* out);

// One layer of the paged KV cache, [num_slots, Hkv, D] elements per K and V (num_slots =
// num_blocks * block_size), in one of three element types:
//   kF32      float32;
//   kBf16     bfloat16 bits, written with round-to-nearest-even (the GPU's bf16 cache);
//   kFp8E4M3  E4M3 codes with per-tensor scales: written as Fp8E4M3FromFloatSat(x / scale), read as
//             Fp8E4M3ToFloat(code) * scale (the FP8 KV cache; quant/fp8_quant.h).
enum class KvElement { kF32, kBf16, kFp8E4M3 };
int KvElementBytes(KvElement element);
const char* KvElementName(KvElement element);  // "f32" | "bf16" | "e4m3"

struct KvCacheLayer {
  KvElement element = KvElement::kF32;
  void* k = nullptr;
  void* v = nullptr;
  float k_scale = 1.0f;  // kFp8E4M3 only
  float v_scale = 1.0f;
};

// Writes each token's K and V into the paged cache of one layer at its slot, converting to the
// cache's element type. Slots < 0 are skipped (padding).
//   k, v: [n, Hkv, D]   slot_mapping: [n]
void WriteKvCache(const float* k, const float* v, const int64_t* slot_mapping, int num_tokens,
                  int num_kv_heads, int head_dim, const KvCacheLayer& cache);
inline void WriteKvCache(const float* k, const float* v, const int64_t* slot_mapping,
                         int num_tokens, int num_kv_heads, int head_dim, float* k_cache,
                         float* v_cache) {
  WriteKvCache(k, v, slot_mapping, num_tokens, num_kv_heads, head_dim,
               KvCacheLayer{KvElement::kF32, k_cache, v_cache});
}

// Causal attention of every new token over its own sequence's cached K/V (the new tokens' K/V
// must already be written). Token row t of sequence i at position p attends to positions 0..p,
// read through block_tables; query head h uses KV head h / (H / Hkv) (GQA).
// out = softmax(q·k * scale) v, softmax in float32 with max subtraction; a bf16 / E4M3 cache is
// converted to float32 as it is read (each element exactly its stored value).
//   q: [n, H, D]   out: [n, H, D]
//   batch: positions, cu_seqlens_q, seq_lens, block_tables, max_blocks_per_seq
// Work is split over (token, head) pairs among num_threads threads (<= 1 → caller's thread).
void PagedAttention(const float* q, const KvCacheLayer& cache, const ForwardBatch& batch,
                    int num_heads, int num_kv_heads, int head_dim, int block_size, float scale,
                    float* out, int num_threads);
inline void PagedAttention(const float* q, const float* k_cache, const float* v_cache,
                           const ForwardBatch& batch, int num_heads, int num_kv_heads,
                           int head_dim, int block_size, float scale, float* out,
                           int num_threads) {
  PagedAttention(q,
                 KvCacheLayer{KvElement::kF32, const_cast<float*>(k_cache),
                              const_cast<float*>(v_cache)},
                 batch, num_heads, num_kv_heads, head_dim, block_size, scale, out, num_threads);
}

}  // namespace kiln::cpu
