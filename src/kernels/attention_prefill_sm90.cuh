// The Hopper (sm_90a) prefill attention kernel: wgmma instead of mma.sync. bf16, head_dim 128.
// Same contract and schedule as attention_prefill.cuh (see attention.h), different engine:
//
// Block = 2 warpgroups (256 threads) × 128 query rows of one head of one sequence; warpgroup wg
// owns rows 64wg..64wg+63. Q, K, V tiles sit in shared memory as two 64-column halves of
// 128-byte rows, 128-byte swizzled (wgmma.cuh), K/V gathered through the block table with
// cp.async, two stages deep. Per K/V tile of kBlockN keys and warpgroup:
//   S = Q·Kᵀ: 8 × wgmma m64n{kBlockN}k16, both operands from shared memory (K-major);
//   causal mask + online softmax on the accumulators (same register layout as mma.sync);
//   O += P·V: kBlockN/16 × wgmma m64n128k16, P from registers, V from shared memory (MN-major).
#pragma once

#include <math_constants.h>

#include "kernels/attention.h"
#include "kernels/common.cuh"
#include "kernels/wgmma.cuh"

namespace kiln::kernels {

template <int kBlockN>
struct Sm90PrefillConfig {
  static constexpr int kHeadDim = 128;
  static constexpr int kThreads = 256;
  static constexpr int kBlockM = 128;
  static constexpr uint32_t kQHalfBytes = kBlockM * 128;   // [128 rows][64 columns] bf16
  static constexpr uint32_t kKvHalfBytes = kBlockN * 128;  // [kBlockN keys][64 columns]
  static constexpr uint32_t kKvTileBytes = 2 * kKvHalfBytes;
  // Q + (K, V) × 2 stages + 1 KB to align the base to the 1024-byte swizzle period.
  static constexpr size_t kSmemBytes = 2 * kQHalfBytes + 2 * 2 * kKvTileBytes + 1024;
  static_assert(kBlockN == 64 || kBlockN == 128);
};

// Byte offset of 16-byte chunk c16 (0..15) of row r in a two-half swizzled tile.
__device__ __forceinline__ uint32_t Sm90TileOffset(uint32_t half_bytes, int r, int c16) {
  return (c16 >> 3) * half_bytes + r * 128 + (((c16 & 7) ^ (r & 7)) << 4);
}

template <int kBlockN>
__device__ __forceinline__ void Sm90QkT(float (&s)[kBlockN / 2], uint64_t a, uint64_t b) {
  if constexpr (kBlockN == 64) {
    WgmmaSS_m64n64k16(s, a, b);
  } else {
    WgmmaSS_m64n128k16(s, a, b);
  }
}

template <int kBlockN>
__global__ void __launch_bounds__(256, 1)
    PagedAttentionPrefillSm90Kernel(PagedAttentionParams<__nv_bfloat16> p, int min_q_len,
                                    int log2_block_size) {
  using Cfg = Sm90PrefillConfig<kBlockN>;
  constexpr int D = Cfg::kHeadDim;
  constexpr int kBlockM = Cfg::kBlockM;
  constexpr int kNTiles = kBlockN / 8;
  constexpr int kDTiles = D / 8;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t s_q = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_k = s_q + 2 * Cfg::kQHalfBytes;
  const uint32_t s_v = s_k + 2 * Cfg::kKvTileBytes;

  const int seq = blockIdx.z;
  const int head = blockIdx.y;
  const int m_block = gridDim.x - 1 - blockIdx.x;
  const int q_start = p.cu_seqlens_q[seq];
  const int q_len = p.cu_seqlens_q[seq + 1] - q_start;
  if (q_len < min_q_len) return;
  const int m0 = m_block * kBlockM;
  if (m0 >= q_len) return;
  const int seq_len = p.seq_lens[seq];
  const int ctx_start = seq_len - q_len;
  const int kvh = head / (p.num_heads / p.num_kv_heads);
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wg = warp >> 2;

  for (int i = tid; i < kBlockM * 16; i += Cfg::kThreads) {
    const int r = i >> 4;
    const int c = i & 15;
    const bool valid = m0 + r < q_len;
    const __nv_bfloat16* src =
        p.q + (valid ? (q_start + m0 + r) * p.q_stride + static_cast<int64_t>(head) * D + c * 8
                     : 0);
    CpAsync16(s_q + Sm90TileOffset(Cfg::kQHalfBytes, r, c), src, valid ? 16 : 0);
  }
  CpAsyncCommit();

  const int kv_end = min(seq_len, ctx_start + m0 + kBlockM);
  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int block_mask = (1 << log2_block_size) - 1;
  auto load_kv = [&](int tile, int stage) {
    const int key0 = tile * kBlockN;
    for (int i = tid; i < kBlockN * 16; i += Cfg::kThreads) {
      const int j = i >> 4;
      const int c = i & 15;
      const int key = key0 + j;
      const bool valid = key < kv_end;
      int64_t offset = 0;
      if (valid) {
        const int64_t slot =
            static_cast<int64_t>(block_table[key >> log2_block_size]) << log2_block_size |
            (key & block_mask);
        offset = (slot * p.num_kv_heads + kvh) * D + c * 8;
      }
      const uint32_t sidx = stage * Cfg::kKvTileBytes + Sm90TileOffset(Cfg::kKvHalfBytes, j, c);
      CpAsync16(s_k + sidx, p.k_cache + offset, valid ? 16 : 0);
      CpAsync16(s_v + sidx, p.v_cache + offset, valid ? 16 : 0);
    }
  };
  load_kv(0, 0);
  CpAsyncCommit();

  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int row_lo = m0 + wg * 64 + (warp & 3) * 16 + (lane >> 2);
  const int pos_lo = ctx_start + row_lo;
  const int pos_hi = pos_lo + 8;
  const int wg_first_pos = ctx_start + m0 + wg * 64;
  const int wg_last_pos = wg_first_pos + 63;
  const int warp_first_pos = wg_first_pos + (warp & 3) * 16;

  float o_acc[kDTiles * 4];
#pragma unroll
  for (int i = 0; i < kDTiles * 4; ++i) o_acc[i] = 0.0f;
  float m_lo = -CUDART_INF_F, m_hi = -CUDART_INF_F;
  float l_lo = 0.0f, l_hi = 0.0f;

  for (int n = 0; n < num_tiles; ++n) {
    const int stage = n & 1;
    if (n + 1 < num_tiles) load_kv(n + 1, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    FenceProxyAsyncShared();
    __syncthreads();

    const int key0 = n * kBlockN;
    if (key0 <= wg_last_pos) {  // uniform per warpgroup (wgmma is warpgroup-collective)
      float s_acc[kBlockN / 2];
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i) s_acc[i] = 0.0f;
      WgmmaFence();
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        const uint32_t half = ks >> 2;
        const uint32_t koff = (ks & 3) * 32;
        const uint64_t desc_q =
            WgmmaDesc(s_q + half * Cfg::kQHalfBytes + wg * 64 * 128 + koff, 16, 1024);
        const uint64_t desc_k =
            WgmmaDesc(s_k + stage * Cfg::kKvTileBytes + half * Cfg::kKvHalfBytes + koff, 16, 1024);
        Sm90QkT<kBlockN>(s_acc, desc_q, desc_k);
      }
      WgmmaCommit();
      WgmmaWait<0>();

      const bool need_mask = key0 + kBlockN - 1 > warp_first_pos;
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
      uint32_t p_frag[kBlockN / 16][4];
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
#pragma unroll
      for (int i = 0; i < kDTiles; ++i) {
        o_acc[4 * i + 0] *= corr_lo;
        o_acc[4 * i + 1] *= corr_lo;
        o_acc[4 * i + 2] *= corr_hi;
        o_acc[4 * i + 3] *= corr_hi;
      }
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        const uint64_t desc_v =
            WgmmaDesc(s_v + stage * Cfg::kKvTileBytes + kk * 16 * 128, Cfg::kKvHalfBytes, 1024);
        WgmmaRS_m64n128k16_TransB(o_acc, p_frag[kk], desc_v);
      }
      WgmmaCommit();
      WgmmaWait<0>();
    }
    __syncthreads();
  }

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
