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
#include "kernels/attention_tile.cuh"
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
  constexpr int kKSteps = D / 16;       // k16 steps of Q·Kᵀ
  constexpr int kNTiles = kBlockN / 8;  // n8 tiles of S
  constexpr int kDTiles = D / 8;        // n8 tiles of O
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
        p.q +
        (valid ? (q_start + m0 + r) * p.q_stride + static_cast<int64_t>(head) * D + c * 8 : 0);
    CpAsync16(SmemAddr(s_q + SwizzledOffset<kChunks>(r, c)), src, valid ? 16 : 0);
  }
  CpAsyncCommit();

  const int kv_end = min(seq_len, ctx_start + m0 + kBlockM);  // keys the tile's last row sees
  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  auto load_kv = [&](int tile, int stage) {
    GatherKvTile<__nv_bfloat16, kBlockN, D, Cfg::kThreads>(
        p, block_table, log2_block_size, kvh, tile * kBlockN, kv_end, SmemAddr(s_k), SmemAddr(s_v),
        tid, [&](int j, int c) {
          return static_cast<uint32_t>((stage * kBlockN * D + SwizzledOffset<kChunks>(j, c)) * 2);
        });
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
  AttentionRowState st{-CUDART_INF_F, -CUDART_INF_F, 0.0f, 0.0f, pos_lo, pos_hi};

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
      for (int i = 0; i < kNTiles; ++i)
        s_acc[i][0] = s_acc[i][1] = s_acc[i][2] = s_acc[i][3] = 0.0f;
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

      // Scale, mask (causal; keys past seq_len are past every valid row's position), softmax.
      const bool need_mask = key0 + kBlockN - 1 > warp_first_pos;
      uint32_t p_frag[kBlockN / 16][4];
      float corr_lo, corr_hi;
      OnlineSoftmaxStep<kBlockN>(AsFlat(s_acc), p_frag, st, key0, need_mask, scale_log2, lane,
                                 corr_lo, corr_hi);
      RescaleO<kDTiles>(AsFlat(o_acc), corr_lo, corr_hi);

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

  WriteOutputRows<kDTiles>(p, AsFlat(o_acc), st, q_start, q_len, row_lo, head, lane);
}

}  // namespace kiln::kernels
