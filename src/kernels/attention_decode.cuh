// The tensor-core decode attention kernel (bf16, head_dim 64 or 128, GQA group <= 16): the
// short-query counterpart of attention_prefill.cuh. See attention.h for the contract.
//
// Block = (query row t, KV head, KV split), 4 warps. The group's G query heads form the 16 rows
// of the MMA A operand (rows >= G are zero), so each K/V tile is read from memory once for the
// whole group. K/V tiles of 64 keys are gathered through the block table with cp.async, two
// stages deep; warp w owns keys 16w..16w+15 of every tile and keeps its own online-softmax state
// (m, l) and O accumulators; the four warps are merged through shared memory at the end. With
// gridDim.z > 1 the block writes its unnormalized partial (O, m, l) for AttentionCombineKernel.
//
// With p.rope.enabled (decode steps, attention.h): the block owning the row's last key first
// writes that token's rotated k and its v into the cache (then a barrier and a fence, so its own
// cp.async gathers see them), and the q rows are rotated on their way into shared memory instead
// of copied with cp.async; RopeRotate and the bf16 roundings are RopeKvCacheKernel's.
#pragma once

#include <math_constants.h>

#include "kernels/attention.h"
#include "kernels/attention_prefill.cuh"
#include "kernels/attention_rows.cuh"
#include "kernels/attention_tile.cuh"
#include "kernels/common.cuh"
#include "kernels/pdl.cuh"
#include "kernels/rope.cuh"

namespace kiln::kernels {

// The fused-RoPE block (see the top of this file) that owns token t's last key: rotated k and v of
// KV head kvh into the cache at slot_mapping[t]. Every thread of the block calls it.
template <int D>
__device__ __forceinline__ void DecodeWriteOwnKv(const PagedAttentionParams<__nv_bfloat16>& p,
                                                 int t, int kvh) {
  const PagedAttentionFusedRope<__nv_bfloat16>& r = p.rope;
  const int64_t slot = r.slot_mapping[t];
  if (slot >= 0) {
    const float pos = static_cast<float>(r.positions[t]);
    const __nv_bfloat16* k = r.k_new + t * r.kv_stride + static_cast<int64_t>(kvh) * D;
    const __nv_bfloat16* v = r.v_new + t * r.kv_stride + static_cast<int64_t>(kvh) * D;
    __nv_bfloat16* k_dst = r.k_cache_out + (slot * p.num_kv_heads + kvh) * D;
    __nv_bfloat16* v_dst = r.v_cache_out + (slot * p.num_kv_heads + kvh) * D;
    for (int i = threadIdx.x; i < D / 2; i += blockDim.x) {
      float a = ToFloat(k[i]), b = ToFloat(k[i + D / 2]);
      RopeRotate(pos, r.inv_freq[i], r.attention_scaling, a, b);
      k_dst[i] = FromFloat<__nv_bfloat16>(a);
      k_dst[i + D / 2] = FromFloat<__nv_bfloat16>(b);
    }
    for (int i = threadIdx.x; i < D; i += blockDim.x) v_dst[i] = v[i];
  }
  __threadfence();
  __syncthreads();
}

template <int D>
struct DecodeConfig {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 128;
  static constexpr int kTile = 16 * kWarps;  // keys per tile
  static constexpr int kChunks = D / 8;
  static constexpr int kMaxGroupSize = 16;
  static_assert(D == 64 || D == 128);
  // Q (16 rows) + K, V × 2 stages; the final merge reuses the K/V area (4 × 16 × D floats).
  static constexpr size_t kKvBytes = 2 * 2 * static_cast<size_t>(kTile) * D * 2;
  static constexpr size_t kMergeBytes = static_cast<size_t>(kWarps) * 16 * D * 4;
  static constexpr size_t kSmemBytes =
      16 * D * 2 + (kKvBytes > kMergeBytes ? kKvBytes : kMergeBytes);
};

template <int D>
__global__ void __launch_bounds__(128)
    PagedAttentionDecodeKernel(PagedAttentionParams<__nv_bfloat16> p, RowsSplitWorkspace ws,
                               int max_q_len, int num_splits, int log2_block_size) {
  using Cfg = DecodeConfig<D>;
  constexpr int kTile = Cfg::kTile;
  constexpr int kChunks = Cfg::kChunks;
  constexpr int kKSteps = D / 16;
  constexpr int kDTiles = D / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* s_k = s_q + 16 * D;
  __nv_bfloat16* s_v = s_k + 2 * kTile * D;
  float* s_merge = reinterpret_cast<float*>(s_k);  // [warp][16][D], after the main loop
  __shared__ float s_wm[Cfg::kWarps][16], s_wl[Cfg::kWarps][16];
  __shared__ float s_row_m[16], s_row_l[16];

  PdlLaunchDependents();
  PdlWait();
  const ShortQueryBlock blk = LocateShortQueryBlock(p, max_q_len, num_splits, kTile);
  if (!blk.valid) return;
  const int seq = blk.seq, kvh = blk.kvh, split = blk.split, t = blk.t;
  const int begin = blk.begin, end = blk.end;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int G = p.num_heads / p.num_kv_heads;
  const int h0 = kvh * G;
  if (begin >= end) {
    WriteEmptySplit(p, ws, blk, G);
    return;
  }

  if (p.rope.enabled) {
    if (end == p.seq_lens[seq]) DecodeWriteOwnKv<D>(p, t, kvh);  // this block reads the new key
    // Q rows rotated into shared memory (element stores; the main loop's first barrier orders
    // them before the fragment loads); rows >= G zero-filled.
    const float pos = static_cast<float>(p.rope.positions[t]);
    for (int i = tid; i < 16 * (D / 2); i += Cfg::kThreads) {
      const int r = i / (D / 2);
      const int j = i - r * (D / 2);
      float a = 0.0f, b = 0.0f;
      if (r < G) {
        const __nv_bfloat16* src = p.q + t * p.q_stride + static_cast<int64_t>(h0 + r) * D;
        a = ToFloat(src[j]);
        b = ToFloat(src[j + D / 2]);
        RopeRotate(pos, p.rope.inv_freq[j], p.rope.attention_scaling, a, b);
      }
      const int jb = j + D / 2;
      s_q[SwizzledOffset<kChunks>(r, j / 8) + j % 8] = FromFloat<__nv_bfloat16>(a);
      s_q[SwizzledOffset<kChunks>(r, jb / 8) + jb % 8] = FromFloat<__nv_bfloat16>(b);
    }
  } else {
    // Q rows (heads of the group) → shared memory; rows >= G zero-filled.
    for (int i = tid; i < 16 * kChunks; i += Cfg::kThreads) {
      const int r = i / kChunks;
      const int c = i - r * kChunks;
      const bool valid = r < G;
      const __nv_bfloat16* src =
          p.q + (valid ? t * p.q_stride + static_cast<int64_t>(h0 + r) * D + c * 8 : 0);
      CpAsync16(SmemAddr(s_q + SwizzledOffset<kChunks>(r, c)), src, valid ? 16 : 0);
    }
  }
  CpAsyncCommit();

  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  auto load_kv = [&](int tile, int stage) {
    GatherKvTile<__nv_bfloat16, kTile, D, Cfg::kThreads>(
        p, block_table, log2_block_size, kvh, begin + tile * kTile, end, SmemAddr(s_k),
        SmemAddr(s_v), tid, [&](int j, int c) {
          return static_cast<uint32_t>((stage * kTile * D + SwizzledOffset<kChunks>(j, c)) * 2);
        });
  };
  load_kv(0, 0);
  CpAsyncCommit();

  const float scale_log2 = p.scale * 1.4426950408889634f;
  uint32_t q_frag[kKSteps][4];
  float o_acc[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o_acc[i][0] = o_acc[i][1] = o_acc[i][2] = o_acc[i][3] = 0.0f;
  AttentionRowState st{-CUDART_INF_F, -CUDART_INF_F, 0.0f, 0.0f, end - 1, end - 1};

  const int num_tiles = (end - begin + kTile - 1) / kTile;
  for (int n = 0; n < num_tiles; ++n) {
    const int stage = n & 1;
    if (n + 1 < num_tiles) load_kv(n + 1, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    if (n == 0) {
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        LdMatrixX4(q_frag[ks],
                   SmemAddr(s_q + SwizzledOffset<kChunks>(lane & 15, 2 * ks + (lane >> 4))));
      }
    }
    const int key_w = begin + n * kTile + warp * 16;  // first key of this warp's slice
    if (key_w < end) {
      const __nv_bfloat16* k_tile = s_k + stage * kTile * D;
      const __nv_bfloat16* v_tile = s_v + stage * kTile * D;
      float s_acc[2][4] = {};
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        uint32_t b[4];
        const int r = warp * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int c = 2 * ks + ((lane >> 3) & 1);
        LdMatrixX4(b, SmemAddr(k_tile + SwizzledOffset<kChunks>(r, c)));
        MmaBf16(s_acc[0], q_frag[ks], b[0], b[1]);
        MmaBf16(s_acc[1], q_frag[ks], b[2], b[3]);
      }
      // Keys at or past `end` are masked (st.pos_* = end - 1); no causal mask within a row run.
      uint32_t p_frag[1][4];
      float corr_lo, corr_hi;
      OnlineSoftmaxStep<16>(AsFlat(s_acc), p_frag, st, key_w, true, scale_log2, lane, corr_lo,
                            corr_hi);
      RescaleO<kDTiles>(AsFlat(o_acc), corr_lo, corr_hi);
#pragma unroll
      for (int dp = 0; dp < kDTiles / 2; ++dp) {
        uint32_t b[4];
        const int r = warp * 16 + (lane & 15);
        const int c = 2 * dp + (lane >> 4);
        LdMatrixX4Trans(b, SmemAddr(v_tile + SwizzledOffset<kChunks>(r, c)));
        MmaBf16(o_acc[2 * dp], p_frag[0], b[0], b[1]);
        MmaBf16(o_acc[2 * dp + 1], p_frag[0], b[2], b[3]);
      }
    }
    __syncthreads();
  }
  CpAsyncWait<0>();

  // Merge the four warps: per row r, M = max_w m_w, L = sum_w l_w 2^(m_w - M).
  float m_lo = st.m_lo, m_hi = st.m_hi, l_lo = st.l_lo, l_hi = st.l_hi;
  l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
  l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
  l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
  l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
  const int row = lane >> 2;
  if ((lane & 3) == 0) {
    s_wm[warp][row] = m_lo;
    s_wm[warp][row + 8] = m_hi;
    s_wl[warp][row] = l_lo;
    s_wl[warp][row + 8] = l_hi;
  }
  __syncthreads();
  if (tid < 16) {
    float m = -CUDART_INF_F;
#pragma unroll
    for (int w = 0; w < Cfg::kWarps; ++w) m = fmaxf(m, s_wm[w][tid]);
    float l = 0.0f;
#pragma unroll
    for (int w = 0; w < Cfg::kWarps; ++w) {
      if (s_wm[w][tid] != -CUDART_INF_F) l += s_wl[w][tid] * FastExp2(s_wm[w][tid] - m);
    }
    s_row_m[tid] = m;
    s_row_l[tid] = l;
  }
  __syncthreads();
  const float f_lo = m_lo == -CUDART_INF_F ? 0.0f : FastExp2(m_lo - s_row_m[row]);
  const float f_hi = m_hi == -CUDART_INF_F ? 0.0f : FastExp2(m_hi - s_row_m[row + 8]);
  float* merge = s_merge + warp * 16 * D;
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) {
    const int col = i * 8 + 2 * (lane & 3);
    merge[row * D + col] = o_acc[i][0] * f_lo;
    merge[row * D + col + 1] = o_acc[i][1] * f_lo;
    merge[(row + 8) * D + col] = o_acc[i][2] * f_hi;
    merge[(row + 8) * D + col + 1] = o_acc[i][3] * f_hi;
  }
  __syncthreads();
  for (int i = tid; i < G * D; i += Cfg::kThreads) {
    const int r = i / D;
    const int d = i - r * D;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < Cfg::kWarps; ++w) o += s_merge[(w * 16 + r) * D + d];
    const int h = h0 + r;
    if (num_splits == 1) {
      p.out[t * p.out_stride + static_cast<int64_t>(h) * D + d] =
          __float2bfloat16_rn(o / s_row_l[r]);
    } else {
      const int64_t idx = (static_cast<int64_t>(split) * p.num_tokens + t) * p.num_heads + h;
      ws.o[idx * D + d] = o;
      if (d == 0) {
        ws.m[idx] = s_row_m[r];
        ws.l[idx] = s_row_l[r];
      }
    }
  }
}

}  // namespace kiln::kernels
