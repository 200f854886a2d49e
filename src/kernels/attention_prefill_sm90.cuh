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
#include "kernels/attention_tile.cuh"
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

// Where one block's loads come from: its sequence's rows of Q and its KV head's cache rows.
struct Sm90TileSource {
  const __nv_bfloat16* q;      // row q_row0 of the sequence, this head
  int num_q_rows;              // valid rows from q_row0 (rows past it are zero-filled)
  const int32_t* block_table;  // the sequence's block table
  int kv_end;                  // keys >= kv_end are zero-filled
  int log2_block_size;
};

// Issues cp.async for the Q tile (kRows rows of 128 columns) into the swizzled two-half layout.
template <int kRows, int kThreads>
__device__ __forceinline__ void Sm90LoadQ(const PagedAttentionParams<__nv_bfloat16>& p,
                                          const Sm90TileSource& src, uint32_t s_q, int tid) {
  for (int i = tid; i < kRows * 16; i += kThreads) {
    const int r = i >> 4;
    const int c = i & 15;
    const bool valid = r < src.num_q_rows;
    const __nv_bfloat16* g = src.q + (valid ? r * p.q_stride + c * 8 : 0);
    CpAsync16(s_q + Sm90TileOffset(kRows * 128, r, c), g, valid ? 16 : 0);
  }
}

// Issues cp.async for K and V of keys [key0, key0 + kBlockN) into a two-half swizzled stage.
template <int kBlockN, int kThreads>
__device__ __forceinline__ void Sm90LoadKv(const PagedAttentionParams<__nv_bfloat16>& p,
                                           const Sm90TileSource& src, int kvh, int key0,
                                           uint32_t s_k, uint32_t s_v, int tid) {
  GatherKvTile<__nv_bfloat16, kBlockN, 128, kThreads>(
      p, src.block_table, src.log2_block_size, kvh, key0, src.kv_end, s_k, s_v, tid,
      [](int j, int c) { return Sm90TileOffset(kBlockN * 128, j, c); });
}

// The query tile of one prefill block: grid (query tile, head, sequence), tiles visited
// longest-first (reverse order) to balance the causal triangle. valid = false: nothing to do
// (a sequence the short-query kernels own, or a tile past the sequence's end).
struct PrefillBlock {
  bool valid;
  int seq, head, kvh, q_start, q_len, m0, seq_len, ctx_start;
  int kv_end;  // keys the tile's last row sees: [0, kv_end)
};

// The tile `tile_from_end` query tiles before the last possible one (grid-wide, from
// max_seqlen_q) of head `head` of sequence blockIdx.z.
template <int kBlockM>
__device__ __forceinline__ PrefillBlock LocatePrefillBlockAt(
    const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len, int tile_from_end, int head) {
  PrefillBlock b{};
  b.seq = blockIdx.z;
  b.head = head;
  b.q_start = p.cu_seqlens_q[b.seq];
  b.q_len = p.cu_seqlens_q[b.seq + 1] - b.q_start;
  b.m0 = tile_from_end * kBlockM;
  b.valid = b.q_len >= min_q_len && b.m0 < b.q_len;
  if (!b.valid) return b;
  b.seq_len = p.seq_lens[b.seq];
  b.ctx_start = b.seq_len - b.q_len;  // position of the first new token
  b.kvh = b.head / (p.num_heads / p.num_kv_heads);
  b.kv_end = min(b.seq_len, b.ctx_start + b.m0 + kBlockM);
  return b;
}

// Grid (query tile, head, sequence).
template <int kBlockM>
__device__ __forceinline__ PrefillBlock
LocatePrefillBlock(const PagedAttentionParams<__nv_bfloat16>& p, int min_q_len) {
  return LocatePrefillBlockAt<kBlockM>(p, min_q_len, gridDim.x - 1 - blockIdx.x, blockIdx.y);
}

// The loads' source for a block (Q rows from m0, the sequence's block table).
template <int kBlockM>
__device__ __forceinline__ Sm90TileSource MakeTileSource(
    const PagedAttentionParams<__nv_bfloat16>& p, const PrefillBlock& b, int log2_block_size) {
  return Sm90TileSource{p.q + (b.q_start + b.m0) * p.q_stride + static_cast<int64_t>(b.head) * 128,
                        b.q_len - b.m0,
                        p.block_tables + static_cast<int64_t>(b.seq) * p.max_blocks_per_seq,
                        b.kv_end, log2_block_size};
}

template <int kBlockN>
__device__ __forceinline__ void Sm90QkT(float (&s)[kBlockN / 2], uint64_t a, uint64_t b,
                                        int scale_d) {
  if constexpr (kBlockN == 64) {
    WgmmaSS_m64n64k16(s, a, b, scale_d);
  } else {
    WgmmaSS_m64n128k16(s, a, b, scale_d);
  }
}

// Issues S = Q·Kᵀ for one warpgroup: 8 k16 steps over the two 64-column halves (the first one
// overwrites S, so S needs no zeroing). q_rows is the warpgroup's first Q row in the Q tile;
// k_tile the K stage.
template <int kBlockN>
__device__ __forceinline__ void Sm90IssueQkT(float (&s_acc)[kBlockN / 2], uint32_t q_rows,
                                             uint32_t q_half_bytes, uint32_t k_tile) {
#pragma unroll
  for (int ks = 0; ks < 8; ++ks) {
    const uint32_t half = ks >> 2;
    const uint32_t koff = (ks & 3) * 32;
    const uint64_t desc_q = WgmmaDesc(q_rows + half * q_half_bytes + koff, 16, 1024);
    const uint64_t desc_k = WgmmaDesc(k_tile + half * kBlockN * 128 + koff, 16, 1024);
    Sm90QkT<kBlockN>(s_acc, desc_q, desc_k, ks == 0 ? 0 : 1);
  }
}

// Issues O += P·V for one warpgroup: kBlockN / 16 k16 steps, V (MN-major) from the V stage.
template <int kBlockN>
__device__ __forceinline__ void Sm90IssuePv(float (&o_acc)[64],
                                            const uint32_t (&p_frag)[kBlockN / 16][4],
                                            uint32_t v_tile) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint64_t desc_v = WgmmaDesc(v_tile + kk * 16 * 128, kBlockN * 128, 1024);
    WgmmaRS_m64n128k16_TransB(o_acc, p_frag[kk], desc_v);
  }
}

template <int kBlockN>
__global__ void __launch_bounds__(256, 1)
    PagedAttentionPrefillSm90Kernel(PagedAttentionParams<__nv_bfloat16> p, int min_q_len,
                                    int log2_block_size) {
  using Cfg = Sm90PrefillConfig<kBlockN>;
  constexpr int D = Cfg::kHeadDim;
  constexpr int kBlockM = Cfg::kBlockM;
  constexpr int kDTiles = D / 8;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t s_q = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_k = s_q + 2 * Cfg::kQHalfBytes;
  const uint32_t s_v = s_k + 2 * Cfg::kKvTileBytes;

  const PrefillBlock blk = LocatePrefillBlock<kBlockM>(p, min_q_len);
  if (!blk.valid) return;
  const int head = blk.head, kvh = blk.kvh, q_start = blk.q_start, q_len = blk.q_len;
  const int m0 = blk.m0, ctx_start = blk.ctx_start, kv_end = blk.kv_end;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wg = warp >> 2;

  const Sm90TileSource src = MakeTileSource<kBlockM>(p, blk, log2_block_size);
  Sm90LoadQ<kBlockM, Cfg::kThreads>(p, src, s_q, tid);
  CpAsyncCommit();

  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;
  auto load_kv = [&](int tile, int stage) {
    Sm90LoadKv<kBlockN, Cfg::kThreads>(p, src, kvh, tile * kBlockN, s_k + stage * Cfg::kKvTileBytes,
                                       s_v + stage * Cfg::kKvTileBytes, tid);
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
  AttentionRowState st{-CUDART_INF_F, -CUDART_INF_F, 0.0f, 0.0f, pos_lo, pos_hi};

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
      WgmmaFence();
      Sm90IssueQkT<kBlockN>(s_acc, s_q + wg * 64 * 128, Cfg::kQHalfBytes,
                            s_k + stage * Cfg::kKvTileBytes);
      WgmmaCommit();
      WgmmaWait<0>();

      const bool need_mask = key0 + kBlockN - 1 > warp_first_pos;
      uint32_t p_frag[kBlockN / 16][4];
      float corr_lo, corr_hi;
      OnlineSoftmaxStep<kBlockN>(s_acc, p_frag, st, key0, need_mask, scale_log2, lane, corr_lo,
                                 corr_hi);
      RescaleO<kDTiles>(o_acc, corr_lo, corr_hi);
      WgmmaFence();
      Sm90IssuePv<kBlockN>(o_acc, p_frag, s_v + stage * Cfg::kKvTileBytes);
      WgmmaCommit();
      WgmmaWait<0>();
    }
    __syncthreads();
  }

  WriteOutputRows<kDTiles>(p, o_acc, st, q_start, q_len, row_lo, head, lane);
}

// The software-pipelined variant (kBlockN 64, three K/V stages): in iteration n a warpgroup
// issues S(n) = Q·K(n)ᵀ and then P·V(n - 1) (P of the previous tile, kept in registers), waits
// only for S(n), and runs the softmax of tile n while the tensor cores still work on P·V(n - 1);
// O is rescaled once that retires. wgmma groups complete in issue order, so "all but the newest
// group" is exactly S(n).
struct Sm90PipelinedConfig {
  static constexpr int kBlockN = 64;
  static constexpr int kStages = 3;
  static constexpr int kThreads = 256;
  static constexpr int kBlockM = 128;
  static constexpr uint32_t kQHalfBytes = kBlockM * 128;
  static constexpr uint32_t kKvTileBytes = 2 * kBlockN * 128;
  static constexpr size_t kSmemBytes = 2 * kQHalfBytes + 2 * kStages * kKvTileBytes + 1024;
};

__global__ void __launch_bounds__(256, 1)
    PagedAttentionPrefillSm90PipelinedKernel(PagedAttentionParams<__nv_bfloat16> p, int min_q_len,
                                             int log2_block_size) {
  using Cfg = Sm90PipelinedConfig;
  constexpr int D = 128;
  constexpr int kBlockN = Cfg::kBlockN;
  constexpr int kBlockM = Cfg::kBlockM;
  constexpr int kDTiles = D / 8;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t s_q = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_k = s_q + 2 * Cfg::kQHalfBytes;
  const uint32_t s_v = s_k + Cfg::kStages * Cfg::kKvTileBytes;

  const PrefillBlock blk = LocatePrefillBlock<kBlockM>(p, min_q_len);
  if (!blk.valid) return;
  const int head = blk.head, kvh = blk.kvh, q_start = blk.q_start, q_len = blk.q_len;
  const int m0 = blk.m0, ctx_start = blk.ctx_start, kv_end = blk.kv_end;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int wg = warp >> 2;

  const Sm90TileSource src = MakeTileSource<kBlockM>(p, blk, log2_block_size);
  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;
  auto load_kv = [&](int tile) {
    const uint32_t stage = (tile % Cfg::kStages) * Cfg::kKvTileBytes;
    Sm90LoadKv<kBlockN, Cfg::kThreads>(p, src, kvh, tile * kBlockN, s_k + stage, s_v + stage, tid);
  };
  Sm90LoadQ<kBlockM, Cfg::kThreads>(p, src, s_q, tid);
  load_kv(0);
  CpAsyncCommit();  // group: Q + tile 0
  if (num_tiles > 1) load_kv(1);
  CpAsyncCommit();  // group: tile 1

  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int row_lo = m0 + wg * 64 + (warp & 3) * 16 + (lane >> 2);
  const int warp_first_pos = ctx_start + m0 + wg * 64 + (warp & 3) * 16;
  const uint32_t q_rows = s_q + wg * 64 * 128;

  float o_acc[kDTiles * 4];
#pragma unroll
  for (int i = 0; i < kDTiles * 4; ++i) o_acc[i] = 0.0f;
  AttentionRowState st{-CUDART_INF_F, -CUDART_INF_F,      0.0f,
                       0.0f,          ctx_start + row_lo, ctx_start + row_lo + 8};
  uint32_t p_frag[kBlockN / 16][4];  // P of the previous tile, the A operand of its P·V

  CpAsyncWait<1>();  // Q and tile 0
  FenceProxyAsyncShared();
  __syncthreads();
  {
    float s_acc[kBlockN / 2];
    WgmmaFenceOperand(o_acc);
    WgmmaFence();
    Sm90IssueQkT<kBlockN>(s_acc, q_rows, Cfg::kQHalfBytes, s_k);
    WgmmaCommit();
    WgmmaWait<0>();
    WgmmaFenceOperand(s_acc);
    float corr_lo, corr_hi;  // O is zero: nothing to rescale
    OnlineSoftmaxStep<kBlockN>(s_acc, p_frag, st, 0, kBlockN - 1 > warp_first_pos, scale_log2, lane,
                               corr_lo, corr_hi);
  }
  // Iteration n: p_prev holds P(n - 1) (read by the in-flight P·V(n - 1)), p_new receives P(n).
  // The two arrays swap roles every iteration (unrolled by two) instead of being copied, so no
  // instruction ever writes a register that an in-flight wgmma reads.
  auto iteration = [&](int n, uint32_t(&p_prev)[kBlockN / 16][4],
                       uint32_t(&p_new)[kBlockN / 16][4]) {
    CpAsyncWait<0>();  // tile n (this thread's copies)
    FenceProxyAsyncShared();
    // Everyone's copies of tile n have landed, and every warpgroup has finished iteration n - 1
    // (so P·V(n - 2) and S(n - 1) retired): the stage of tile n - 2 may receive tile n + 1.
    __syncthreads();
    if (n + 1 < num_tiles) load_kv(n + 1);
    CpAsyncCommit();

    // Every warpgroup runs every tile, uniformly (wgmma is warpgroup-collective and ptxas
    // serializes conditionally issued pipelines): a tile past a warpgroup's causal range is fully
    // masked, which leaves m, l and O unchanged.
    float s_acc[kBlockN / 2];
    WgmmaFenceOperand(o_acc);
    WgmmaFence();
    Sm90IssueQkT<kBlockN>(s_acc, q_rows, Cfg::kQHalfBytes,
                          s_k + (n % Cfg::kStages) * Cfg::kKvTileBytes);
    WgmmaCommit();
    Sm90IssuePv<kBlockN>(o_acc, p_prev, s_v + ((n - 1) % Cfg::kStages) * Cfg::kKvTileBytes);
    WgmmaCommit();
    WgmmaWait<1>();  // S(n) done; P·V(n - 1) runs on under the softmax
    WgmmaFenceOperand(s_acc);
    const int key0 = n * kBlockN;
    float corr_lo, corr_hi;
    OnlineSoftmaxStep<kBlockN>(s_acc, p_new, st, key0, key0 + kBlockN - 1 > warp_first_pos,
                               scale_log2, lane, corr_lo, corr_hi);
    WgmmaWait<0>();
    WgmmaFenceOperand(o_acc);
    RescaleO<kDTiles>(o_acc, corr_lo, corr_hi);
  };
  auto last_pv = [&](const uint32_t(&p_last)[kBlockN / 16][4]) {
    WgmmaFenceOperand(o_acc);
    WgmmaFence();
    Sm90IssuePv<kBlockN>(o_acc, p_last, s_v + ((num_tiles - 1) % Cfg::kStages) * Cfg::kKvTileBytes);
    WgmmaCommit();
    WgmmaWait<0>();
    WgmmaFenceOperand(o_acc);
  };
  uint32_t p_other[kBlockN / 16][4];
  int n = 1;
  for (; n + 1 < num_tiles; n += 2) {
    iteration(n, p_frag, p_other);
    iteration(n + 1, p_other, p_frag);
  }
  if (n < num_tiles) {
    iteration(n, p_frag, p_other);
    last_pv(p_other);
  } else {
    last_pv(p_frag);
  }
  WriteOutputRows<kDTiles>(p, o_acc, st, q_start, q_len, row_lo, head, lane);
}

// mbarrier helpers (shared::cta).
__device__ __forceinline__ void MbarInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Arrives on `bar` once all of this thread's earlier cp.async copies have completed.
__device__ __forceinline__ void MbarArriveOnCpAsync(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Blocks until the phase of `bar` with this parity has completed.
__device__ __forceinline__ void MbarWait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_AGAIN:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_AGAIN;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// The warp-specialized variant: warps 0-7 are two consumer warpgroups (as in the kernel above),
// warp 8 is a producer that gathers K/V tiles through the block table into kStages stages with
// cp.async, signalling "full" per stage on an mbarrier when its copies land; each consumer warp
// signals "empty" once its wgmmas on the stage retired. No block-wide barrier in the main loop,
// so the two warpgroups drift apart and one's softmax overlaps the other's matrix work.
template <int kBlockN, int kStages>
struct Sm90WsConfig {
  static constexpr int kThreads = 288;
  static constexpr int kBlockM = 128;
  static constexpr uint32_t kQHalfBytes = kBlockM * 128;
  static constexpr uint32_t kKvTileBytes = 2 * kBlockN * 128;
  static constexpr size_t kSmemBytes = 2 * kQHalfBytes + 2 * kStages * kKvTileBytes + 1024;
};

template <int kBlockN, int kStages>
__global__ void __launch_bounds__(288, 1)
    PagedAttentionPrefillSm90WsKernel(PagedAttentionParams<__nv_bfloat16> p, int min_q_len,
                                      int log2_block_size) {
  using Cfg = Sm90WsConfig<kBlockN, kStages>;
  constexpr int D = 128;
  constexpr int kBlockM = Cfg::kBlockM;
  constexpr int kDTiles = D / 8;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t bar_full[kStages], bar_empty[kStages];
  const uint32_t s_q = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_k = s_q + 2 * Cfg::kQHalfBytes;
  const uint32_t s_v = s_k + kStages * Cfg::kKvTileBytes;

  const PrefillBlock blk = LocatePrefillBlock<kBlockM>(p, min_q_len);
  if (!blk.valid) return;
  const int head = blk.head, kvh = blk.kvh, q_start = blk.q_start, q_len = blk.q_len;
  const int m0 = blk.m0, ctx_start = blk.ctx_start, kv_end = blk.kv_end;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;

  const Sm90TileSource src = MakeTileSource<kBlockM>(p, blk, log2_block_size);
  const int num_tiles = (kv_end + kBlockN - 1) / kBlockN;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      MbarInit(SmemAddr(&bar_full[s]), 32);
      MbarInit(SmemAddr(&bar_empty[s]), 8);
    }
  }
  __syncthreads();

  if (warp == 8) {  // producer
    for (int n = 0; n < num_tiles; ++n) {
      const int s = n % kStages;
      MbarWait(SmemAddr(&bar_empty[s]), ((n / kStages) & 1) ^ 1);
      Sm90LoadKv<kBlockN, 32>(p, src, kvh, n * kBlockN, s_k + s * Cfg::kKvTileBytes,
                              s_v + s * Cfg::kKvTileBytes, lane);
      MbarArriveOnCpAsync(SmemAddr(&bar_full[s]));
    }
    CpAsyncWait<0>();
    return;
  }

  // Consumers: Q, then the K/V stages as they fill.
  Sm90LoadQ<kBlockM, 256>(p, src, s_q, tid);
  CpAsyncCommit();
  CpAsyncWait<0>();
  FenceProxyAsyncShared();
  asm volatile("bar.sync 1, 256;\n" ::: "memory");

  const int wg = warp >> 2;
  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int row_lo = m0 + wg * 64 + (warp & 3) * 16 + (lane >> 2);
  const int wg_last_pos = ctx_start + m0 + wg * 64 + 63;
  const int warp_first_pos = ctx_start + m0 + wg * 64 + (warp & 3) * 16;
  const uint32_t q_rows = s_q + wg * 64 * 128;

  float o_acc[kDTiles * 4];
#pragma unroll
  for (int i = 0; i < kDTiles * 4; ++i) o_acc[i] = 0.0f;
  AttentionRowState st{-CUDART_INF_F, -CUDART_INF_F,      0.0f,
                       0.0f,          ctx_start + row_lo, ctx_start + row_lo + 8};

  for (int n = 0; n < num_tiles; ++n) {
    const int s = n % kStages;
    const int key0 = n * kBlockN;
    // Wait even for a tile this warpgroup skips: an "empty" arrival must never run ahead of the
    // stage's fill, or it could complete the next phase early.
    MbarWait(SmemAddr(&bar_full[s]), (n / kStages) & 1);
    if (key0 <= wg_last_pos) {  // uniform per warpgroup
      FenceProxyAsyncShared();
      float s_acc[kBlockN / 2];
      WgmmaFenceOperand(o_acc);
      WgmmaFence();
      Sm90IssueQkT<kBlockN>(s_acc, q_rows, Cfg::kQHalfBytes, s_k + s * Cfg::kKvTileBytes);
      WgmmaCommit();
      WgmmaWait<0>();
      WgmmaFenceOperand(s_acc);
      uint32_t p_frag[kBlockN / 16][4];
      float corr_lo, corr_hi;
      OnlineSoftmaxStep<kBlockN>(s_acc, p_frag, st, key0, key0 + kBlockN - 1 > warp_first_pos,
                                 scale_log2, lane, corr_lo, corr_hi);
      RescaleO<kDTiles>(o_acc, corr_lo, corr_hi);
      WgmmaFenceOperand(o_acc);
      WgmmaFence();
      Sm90IssuePv<kBlockN>(o_acc, p_frag, s_v + s * Cfg::kKvTileBytes);
      WgmmaCommit();
      WgmmaWait<0>();
      WgmmaFenceOperand(o_acc);
    }
    __syncwarp();
    if (lane == 0) MbarArrive(SmemAddr(&bar_empty[s]));
  }
  WriteOutputRows<kDTiles>(p, o_acc, st, q_start, q_len, row_lo, head, lane);
}

}  // namespace kiln::kernels
