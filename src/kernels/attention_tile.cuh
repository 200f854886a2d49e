// The per-tile pieces shared by the attention kernels: the gather of a K/V tile through the block
// table into shared memory, and (tensor-core kernels) the online softmax of a warp's 16 query rows
// over one tile of keys held in MMA accumulators, the O rescale, and the normalized output write.
// Accumulator layout (mma.sync m16n8k16 C, also wgmma's per-warp layout): for n8 tile i, elements
// 4i, 4i+1 are row lane/4, columns 8i + 2(lane%4) + {0,1}; elements 4i+2, 4i+3 the same columns of
// row lane/4 + 8. Header-only, __device__ only.
#pragma once

#include <math_constants.h>

#include "kernels/attention.h"
#include "kernels/common.cuh"

namespace kiln::kernels {

// Issues cp.async for K and V of keys [key0, key0 + kRows) of KV head kvh (head_dim D) through
// the sequence's block table; keys >= kv_end are zero-filled (and their block-table entries never
// read). Chunk c (16 bytes) of tile row j lands at byte offset dst(j, c) from s_k and from s_v.
template <typename T, int kRows, int D, int kThreads, typename DstOffset>
__device__ __forceinline__ void GatherKvTile(const PagedAttentionParams<T>& p,
                                             const int32_t* block_table, int log2_block_size,
                                             int kvh, int key0, int kv_end, uint32_t s_k,
                                             uint32_t s_v, int tid, DstOffset dst) {
  constexpr int kVe = 16 / sizeof(T);
  constexpr int kChunks = D / kVe;
  const int block_mask = (1 << log2_block_size) - 1;
  for (int i = tid; i < kRows * kChunks; i += kThreads) {
    const int j = i / kChunks;
    const int c = i - j * kChunks;
    const int key = key0 + j;
    const bool valid = key < kv_end;
    int64_t offset = 0;
    if (valid) {
      const int64_t slot = static_cast<int64_t>(block_table[key >> log2_block_size])
                               << log2_block_size |
                           (key & block_mask);
      offset = (slot * p.num_kv_heads + kvh) * D + c * kVe;
    }
    const uint32_t o = dst(j, c);
    CpAsync16(s_k + o, p.k_cache + offset, valid ? 16 : 0);
    CpAsync16(s_v + o, p.v_cache + offset, valid ? 16 : 0);
  }
}

// A [tiles][4] accumulator array seen as the flat [tiles * 4] array the helpers take.
template <int N>
__device__ __forceinline__ float (&AsFlat(float (&a)[N][4]))[N * 4] {
  return reinterpret_cast<float(&)[N * 4]>(a);
}

// Softmax state of a thread's two query rows (lo = row lane/4, hi = row lane/4 + 8): running max
// m (base-2 logits), running sum l (this thread's columns only; summed over the 4 threads of a row
// at the end), and the largest key position each row may see.
struct AttentionRowState {
  float m_lo, m_hi, l_lo, l_hi;
  int pos_lo, pos_hi;
};

// Online-softmax step on one S tile of kBlockN keys starting at key0: scales to base-2 logits,
// masks keys past each row's position when need_mask, updates m and l, packs P as the bf16 A
// operand of the P·V MMA and returns the factors O must be rescaled by (RescaleO).

template <int kBlockN>
__device__ __forceinline__ void OnlineSoftmaxStep(float (&s_acc)[kBlockN / 2],
                                                  uint32_t (&p_frag)[kBlockN / 16][4],
                                                  AttentionRowState& st, int key0, bool need_mask,
                                                  float scale_log2, int lane, float& corr_lo_out,
                                                  float& corr_hi_out) {
  constexpr int kNTiles = kBlockN / 8;
  float& m_lo = st.m_lo;
  float& m_hi = st.m_hi;
  float& l_lo = st.l_lo;
  float& l_hi = st.l_hi;
  const int pos_lo = st.pos_lo;
  const int pos_hi = st.pos_hi;
  float mx_lo = -CUDART_INF_F, mx_hi = -CUDART_INF_F;
#pragma unroll
  for (int i = 0; i < kNTiles; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float s = s_acc[4 * i + e] * scale_log2;
      if (need_mask) {
        const int key = key0 + i * 8 + 2 * (lane & 3) + (e & 1);
        if (key > (e < 2 ? pos_lo : pos_hi)) s = -CUDART_INF_F;
      }
      s_acc[4 * i + e] = s;
    }
    mx_lo = fmaxf(mx_lo, fmaxf(s_acc[4 * i], s_acc[4 * i + 1]));
    mx_hi = fmaxf(mx_hi, fmaxf(s_acc[4 * i + 2], s_acc[4 * i + 3]));
  }
  mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
  mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
  mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
  mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
  const float m_new_lo = fmaxf(m_lo, mx_lo);
  const float m_new_hi = fmaxf(m_hi, mx_hi);
  const float base_lo = m_new_lo == -CUDART_INF_F ? 0.0f : m_new_lo;
  const float base_hi = m_new_hi == -CUDART_INF_F ? 0.0f : m_new_hi;
  const float corr_lo = FastExp2(m_lo - base_lo);
  const float corr_hi = FastExp2(m_hi - base_hi);
  m_lo = m_new_lo;
  m_hi = m_new_hi;
  float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
  for (int i = 0; i < kNTiles; ++i) {
    const float p0 = FastExp2(s_acc[4 * i + 0] - base_lo);
    const float p1 = FastExp2(s_acc[4 * i + 1] - base_lo);
    const float p2 = FastExp2(s_acc[4 * i + 2] - base_hi);
    const float p3 = FastExp2(s_acc[4 * i + 3] - base_hi);
    sum_lo += p0 + p1;
    sum_hi += p2 + p3;
    p_frag[i / 2][(i & 1) * 2 + 0] = PackBf16x2(p0, p1);
    p_frag[i / 2][(i & 1) * 2 + 1] = PackBf16x2(p2, p3);
  }
  l_lo = l_lo * corr_lo + sum_lo;
  l_hi = l_hi * corr_hi + sum_hi;
  corr_lo_out = corr_lo;
  corr_hi_out = corr_hi;
}

// O *= the softmax correction of the thread's two rows.
template <int kDTiles>
__device__ __forceinline__ void RescaleO(float (&o_acc)[kDTiles * 4], float corr_lo,
                                         float corr_hi) {
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) {
    o_acc[4 * i + 0] *= corr_lo;
    o_acc[4 * i + 1] *= corr_lo;
    o_acc[4 * i + 2] *= corr_hi;
    o_acc[4 * i + 3] *= corr_hi;
  }
}

// Normalizes O by the row sums and writes the thread's two rows (those inside the sequence).
template <int kDTiles>
__device__ __forceinline__ void WriteOutputRows(const PagedAttentionParams<__nv_bfloat16>& p,
                                                const float (&o_acc)[kDTiles * 4],
                                                AttentionRowState st, int q_start, int q_len,
                                                int row_lo, int head, int lane) {
  constexpr int D = kDTiles * 8;
  float l_lo = st.l_lo, l_hi = st.l_hi;
  l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
  l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
  l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
  l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
  const float inv_lo = l_lo > 0.0f ? 1.0f / l_lo : 0.0f;
  const float inv_hi = l_hi > 0.0f ? 1.0f / l_hi : 0.0f;
  const int col = 2 * (lane & 3);
  if (row_lo < q_len) {
    __nv_bfloat16* o = p.out + (q_start + row_lo) * p.out_stride + static_cast<int64_t>(head) * D;
#pragma unroll
    for (int i = 0; i < kDTiles; ++i) {
      *reinterpret_cast<uint32_t*>(o + i * 8 + col) =
          PackBf16x2(o_acc[4 * i] * inv_lo, o_acc[4 * i + 1] * inv_lo);
    }
  }
  if (row_lo + 8 < q_len) {
    __nv_bfloat16* o =
        p.out + (q_start + row_lo + 8) * p.out_stride + static_cast<int64_t>(head) * D;
#pragma unroll
    for (int i = 0; i < kDTiles; ++i) {
      *reinterpret_cast<uint32_t*>(o + i * 8 + col) =
          PackBf16x2(o_acc[4 * i + 2] * inv_hi, o_acc[4 * i + 3] * inv_hi);
    }
  }
}

}  // namespace kiln::kernels
