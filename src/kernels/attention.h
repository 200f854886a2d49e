// Paged attention over one layer's KV cache for a ForwardBatch (CPU twin: cpu::PagedAttention).
//
// Semantics: token row t of sequence i (rows [cu_seqlens_q[i], cu_seqlens_q[i+1])) sits at
// position p = seq_lens[i] - q_len_i + (t - cu_seqlens_q[i]) and attends causally to positions
// 0..p of its own sequence, read through block_tables (the new tokens' K/V must already be in
// the cache, see rope.h; or, at decode, the kernel writes them itself: PagedAttentionFusedRope).
// Query head h uses KV head h / (num_heads / num_kv_heads) (GQA).
// out = softmax(q·k * scale) v; softmax in float32 with max subtraction, accumulation in float32.
//
// Kernels behind the one launcher (FlashAttention-style: K/V tiles gathered through the block
// table with cp.async, online softmax, fp32 accumulation):
//  - prefill, sequences with q_len > kDecodeMaxQueryLen (bf16 only):
//      head_dim 128: wgmma (sm_90a), a producer warpgroup that fills K/V tiles of 128 keys with
//                    the bulk tensor copy engine (TMA, one copy per page and 64-column half;
//                    tensor maps encoded per launch on the host) and 2 consumer warpgroups × 64
//                    query rows that take turns on the tensor cores (ping-pong)
//                    (attention_prefill_sm90_tma.cuh); if the driver offers no tensor-map
//                    encoder, the cp.async wgmma kernel (attention_prefill_sm90.cuh);
//      head_dim 64:  mma.sync m16n8k16, 8 warps × 16 query rows, tiles of 64 keys
//                    (attention_prefill.cuh).
//  - short query runs (decode), sequences with q_len <= kDecodeMaxQueryLen: one block per
//    (query row, KV head, KV split); the GQA group's q heads share each K/V tile (read once);
//    split-KV (flash-decoding) plus a combine kernel when (rows × KV heads) blocks would not cover
//    the multiprocessors.
//      bf16, head_dim 64/128, group <= 16: mma.sync with the group as the MMA rows
//                    (attention_decode.cuh);
//      otherwise (float32, other head dims): CUDA cores (attention_rows.cuh), which then also
//                    take the long sequences.
// A batch that mixes both kinds gets both launches; each kernel skips the other's sequences.
//
// KV cache layout: [num_blocks, block_size, num_kv_heads, head_dim]; block_size a power of two
// >= 16. Block table entries past a sequence's last block are never read.
// Limits: head_dim a multiple of 8 and <= 256; (num_heads / num_kv_heads) * head_dim <= 2048;
// num_seqs <= 65535.
// Launchers are asynchronous on `stream`, return cudaErrorInvalidValue for unsupported shapes
// and otherwise the launch's cudaError_t. They query the device's multiprocessor count (no sync),
// so they are safe inside CUDA graph capture; the grid depends only on the host-side fields.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace kiln::kernels {

constexpr int kDecodeMaxQueryLen = 8;  // q_len at or below this goes to the rows kernel
constexpr int kMaxKvSplits = 64;

// Decode steps only: RoPE (rotate-half) and the KV-cache write of each row's own token, done by
// the attention kernel instead of a RopeKvCache launch before it (kernels::RopeKvCache's
// arithmetic, bit for bit). q then holds the unrotated q (rotated as it is loaded); the block that
// owns a row's last key first rotates k_new and copies v_new into k_cache_out / v_cache_out at
// slot_mapping[t] (nothing when the slot is < 0). Needs PagedAttentionFusesRope(...) (bf16,
// max_seqlen_q == 1, the tensor-core decode kernel), k_cache_out == k_cache and v_cache_out ==
// v_cache; no q/k norm, no bias (add it in the GEMM); cudaErrorInvalidValue otherwise.
template <typename T>
struct PagedAttentionFusedRope {
  bool enabled = false;
  const int32_t* positions = nullptr;     // [num_tokens]
  const float* inv_freq = nullptr;        // [head_dim / 2]
  float attention_scaling = 1.0f;
  const int64_t* slot_mapping = nullptr;  // [num_tokens]
  const T* k_new = nullptr;               // [num_tokens, num_kv_heads * head_dim], kv_stride apart
  const T* v_new = nullptr;
  int64_t kv_stride = 0;
  T* k_cache_out = nullptr;
  T* v_cache_out = nullptr;
};

// Whether PagedAttention can take PagedAttentionFusedRope for this shape (bf16 assumed).
bool PagedAttentionFusesRope(int num_heads, int num_kv_heads, int head_dim, int max_seqlen_q);

template <typename T>
struct PagedAttentionParams {
  const T* q = nullptr;  // [num_tokens, num_heads * head_dim], rows q_stride elements apart
  int64_t q_stride = 0;
  const T* k_cache = nullptr;  // [num_slots, num_kv_heads, head_dim]
  const T* v_cache = nullptr;  // [num_slots, num_kv_heads, head_dim]
  T* out = nullptr;            // [num_tokens, num_heads * head_dim], rows out_stride elements apart
  int64_t out_stride = 0;
  const int32_t* cu_seqlens_q = nullptr;  // [num_seqs + 1] (device)
  const int32_t* seq_lens = nullptr;      // [num_seqs] (device)
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq] (device)
  int max_blocks_per_seq = 0;
  int num_seqs = 0;
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int max_seqlen_q = 0;  // host-side upper bound of the q lengths (sizes the grids)
  int max_seq_len = 0;   // host-side upper bound of seq_lens (chooses the KV split count)
  float scale = 1.0f;    // usually 1 / sqrt(head_dim)
  // Split-KV scratch for the rows kernel; nullptr / too small → fewer (or no) splits.
  float* workspace = nullptr;
  size_t workspace_size_bytes = 0;
  int num_kv_splits = 0;  // 0 → chosen from the shape; else forced (clamped to kMaxKvSplits)
  PagedAttentionFusedRope<T> rope;  // decode steps: RoPE + KV write of the step's tokens here
};

// Workspace bytes that let the rows kernel use `num_kv_splits` splits over `num_tokens` rows.
size_t PagedAttentionWorkspaceSize(int num_tokens, int num_heads, int head_dim, int num_kv_splits);

template <typename T>
cudaError_t PagedAttention(const PagedAttentionParams<T>& params, cudaStream_t stream);

}  // namespace kiln::kernels
