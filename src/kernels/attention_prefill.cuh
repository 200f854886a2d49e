// The tensor-core prefill attention kernel (bf16, head_dim 64 or 128). See attention.h.
//
// Block = (Q tile of kBlockM = 16·kWarps rows, q head, sequence); warp w owns rows 16w..16w+15.
// Q, K and V tiles live in shared memory in an XOR-swizzled layout (16-byte chunk c of row r is
// stored at chunk c ^ (r & 7)) so that ldmatrix is conflict-free. K/V tiles of kBlockN keys are
// gathered through the block table with cp.async, two stages deep. Per tile and warp:
//   S = Q·Kᵀ (mma.sync m16n8k16, fp32) → causal mask → online softmax (base 2) → P (bf16, reused
//   from the S accumulators as A fragments) → O += P·V (V fragments through ldmatrix.trans).
// Q tiles are visited longest-first (reverse order) to balance the causal triangle.
#pragma once

#include <math_constants.h>

#include "kernels/attention.h"
#include "kernels/common.cuh"

namespace kiln::kernels {

template <int D, int kWarps, int kBlockN>
struct PrefillConfig {
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = 16 * kWarps;
  static constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert(D == 64 || D == 128, "head_dim 64 or 128");
  static_assert(kBlockN % 16 == 0);
  static constexpr size_t kSmemBytes =
      (static_cast<size_t>(kBlockM) * D + 2 * 2 * static_cast<size_t>(kBlockN) * D) * 2;
};

// Element offset of (row, 16-byte chunk) in a swizzled tile with kChunks chunks per row.
template <int kChunks>
__device__ __forceinline__ int SwizzledOffset(int row, int chunk) {
  return row * kChunks * 8 + ((chunk ^ (row & 7)) << 3);
}

template <int D, int kWarps, int kBlockN>
__global__ void __launch_bounds__(kWarps * 32, 1)
    PagedAttentionPrefillKernel(PagedAttentionParams<__nv_bfloat16> p, int min_q_len,
                                int log2_block_size) {
  using Cfg = PrefillConfig<D, kWarps, kBlockN>;
  constexpr int kBlockM = Cfg::kBlockM;
  constexpr int kChunks = Cfg::kChunks;
  constexpr int kKSteps = D / 16;        // k16 steps of Q·Kᵀ
  constexpr int kNTiles = kBlockN / 8;   // n8 tiles of S
  constexpr int kDTiles = D / 8;         // n8 tiles of O
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __nv_bfloat16* s_q = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* s_k = s_q + kBlockM * D;
  __nv_bfloat16* s_v = s_k + 2 * kBlockN * D;

  const int seq = blockIdx.z;
  const int head = blockIdx.y;
  const int m_block = gridDim.x - 1 - blockIdx.x;
  const int q_start = p.cu_seqlens_q[seq];
  const int q_len = p.cu_seqlens_q[seq + 1] - q_start;
  if (q_len < min_q_len) return;  // the rows kernel owns this sequence
  const int m0 = m_block * kBlockM;
  if (m0 >= q_len) return;
  const int seq_len = p.seq_lens[seq];
  const int ctx_start = seq_len - q_len;  // position of the first new token
  const int kvh = head / (p.num_heads / p.num_kv_heads);
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;

  // Q tile → shared memory (rows past q_len zero-filled).
  for (int i = tid; i < kBlockM * kChunks; i += Cfg::kThreads) {
    const int r = i / kChunks;
    const int c = i - r * kChunks;
    const bool valid = m0 + r < q_len;
    const __nv_bfloat16* src =
        p.q + (valid ? (q_start + m0 + r) * p.q_stride + static_cast<int64_t>(head) * D + c * 8
                     : 0);
    CpAsync16(SmemAddr(s_q + SwizzledOffset<kChunks>(r, c)), src, valid ? 16 : 0);
  }
  CpAsyncCommit();

  const int kv_end = min(seq_len, ctx_start + m0 + kBlockM);  // keys the tile's last row sees
  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int block_mask = (1 << log2_block_size) - 1;
  auto load_kv = [&](int tile, int stage) {
    const int key0 = tile * kBlockN;
    for (int i = tid; i < kBlockN * kChunks; i += Cfg::kThreads) {
      const int j = i / kChunks;
      const int c = i - j * kChunks;
      const int key = key0 + j;
      const bool valid = key < kv_end;
      int64_t offset = 0;
      if (valid) {
        const int64_t slot =
            static_cast<int64_t>(block_table[key >> log2_block_size]) << log2_block_size |
            (key & block_mask);
        offset = (slot * p.num_kv_heads + kvh) * D + c * 8;
      }
      const int sidx = stage * kBlockN * D + SwizzledOffset<kChunks>(j, c);
      CpAsync16(SmemAddr(s_k + sidx), p.k_cache + offset, valid ? 16 : 0);
      CpAsync16(SmemAddr(s_v + sidx), p.v_cache + offset, valid ? 16 : 0);
    }
  };
  load_kv(0, 0);
  CpAsyncCommit();

  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int row_lo = m0 + warp * 16 + (lane >> 2);  // this thread's rows: row_lo, row_lo + 8
  const int pos_lo = ctx_start + row_lo;
  const int pos_hi = pos_lo + 8;
  const int warp_last_pos = ctx_start + m0 + warp * 16 + 15;
  const int warp_first_pos = ctx_start + m0 + warp * 16;

  uint32_t q_frag[kKSteps][4];
  float o_acc[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o_acc[i][0] = o_acc[i][1] = o_acc[i][2] = o_acc[i][3] = 0.0f;
  float m_lo = -CUDART_INF_F, m_hi = -CUDART_INF_F;
  float l_lo = 0.0f, l_hi = 0.0f;

  for (int n = 0; n < num_tiles; ++n) {
    const int stage = n & 1;
    if (n + 1 < num_tiles) load_kv(n + 1, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();

    if (n == 0) {
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        const int r = warp * 16 + (lane & 15);
        const int c = 2 * ks + (lane >> 4);
        LdMatrixX4(q_frag[ks], SmemAddr(s_q + SwizzledOffset<kChunks>(r, c)));
      }
    }

    const int key0 = n * kBlockN;
    if (key0 <= warp_last_pos) {  // otherwise every key of the tile is masked for this warp
      const __nv_bfloat16* k_tile = s_k + stage * kBlockN * D;
      const __nv_bfloat16* v_tile = s_v + stage * kBlockN * D;
      float s_acc[kNTiles][4];
#pragma unroll
      for (int i = 0; i < kNTiles; ++i) s_acc[i][0] = s_acc[i][1] = s_acc[i][2] = s_acc[i][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
        for (int np = 0; np < kNTiles / 2; ++np) {
          uint32_t b[4];
          const int r = np * 16 + (lane & 7) + ((lane >> 4) << 3);
          const int c = 2 * ks + ((lane >> 3) & 1);
          LdMatrixX4(b, SmemAddr(k_tile + SwizzledOffset<kChunks>(r, c)));
          MmaBf16(s_acc[2 * np], q_frag[ks], b[0], b[1]);
          MmaBf16(s_acc[2 * np + 1], q_frag[ks], b[2], b[3]);
        }
      }

      // Scale, mask (causal; keys past seq_len are past every valid row's position), row max.
      const bool need_mask = key0 + kBlockN - 1 > warp_first_pos;
      float mx_lo = -CUDART_INF_F, mx_hi = -CUDART_INF_F;
#pragma unroll
      for (int i = 0; i < kNTiles; ++i) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float s = s_acc[i][e] * scale_log2;
          if (need_mask) {
            const int key = key0 + i * 8 + 2 * (lane & 3) + (e & 1);
            const int pos = e < 2 ? pos_lo : pos_hi;
            if (key > pos) s = -CUDART_INF_F;
          }
          s_acc[i][e] = s;
        }
        mx_lo = fmaxf(mx_lo, fmaxf(s_acc[i][0], s_acc[i][1]));
        mx_hi = fmaxf(mx_hi, fmaxf(s_acc[i][2], s_acc[i][3]));
      }
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
      mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
      mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
      const float m_new_lo = fmaxf(m_lo, mx_lo);
      const float m_new_hi = fmaxf(m_hi, mx_hi);
      // A row fully masked so far keeps m = -inf; use 0 as the base to avoid (-inf) - (-inf).
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
        const float p0 = FastExp2(s_acc[i][0] - base_lo);
        const float p1 = FastExp2(s_acc[i][1] - base_lo);
        const float p2 = FastExp2(s_acc[i][2] - base_hi);
        const float p3 = FastExp2(s_acc[i][3] - base_hi);
        sum_lo += p0 + p1;
        sum_hi += p2 + p3;
        p_frag[i / 2][(i & 1) * 2 + 0] = PackBf16x2(p0, p1);
        p_frag[i / 2][(i & 1) * 2 + 1] = PackBf16x2(p2, p3);
      }
      l_lo = l_lo * corr_lo + sum_lo;
      l_hi = l_hi * corr_hi + sum_hi;
#pragma unroll
      for (int i = 0; i < kDTiles; ++i) {
        o_acc[i][0] *= corr_lo;
        o_acc[i][1] *= corr_lo;
        o_acc[i][2] *= corr_hi;
        o_acc[i][3] *= corr_hi;
      }

      // O += P·V.
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
#pragma unroll
        for (int dp = 0; dp < kDTiles / 2; ++dp) {
          uint32_t b[4];
          const int r = kk * 16 + (lane & 15);
          const int c = 2 * dp + (lane >> 4);
          LdMatrixX4Trans(b, SmemAddr(v_tile + SwizzledOffset<kChunks>(r, c)));
          MmaBf16(o_acc[2 * dp], p_frag[kk], b[0], b[1]);
          MmaBf16(o_acc[2 * dp + 1], p_frag[kk], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the stage is overwritten by the next iteration's load
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
          PackBf16x2(o_acc[i][0] * inv_lo, o_acc[i][1] * inv_lo);
    }
  }
  if (row_lo + 8 < q_len) {
    __nv_bfloat16* o =
        p.out + (q_start + row_lo + 8) * p.out_stride + static_cast<int64_t>(head) * D;
#pragma unroll
    for (int i = 0; i < kDTiles; ++i) {
      *reinterpret_cast<uint32_t*>(o + i * 8 + col) =
          PackBf16x2(o_acc[i][2] * inv_hi, o_acc[i][3] * inv_hi);
    }
  }
}

}  // namespace kiln::kernels
