// The Hopper (sm_90a) prefill attention kernel with a TMA producer and ping-pong consumers.
// bf16, head_dim 128; same contract as attention_prefill_sm90.cuh (see attention.h).
//
// Grid (head, query tile, sequence), query tiles visited longest-first.
// Block = 3 warpgroups (384 threads) × 128 query rows of one head of one sequence:
//  - warpgroup 0 is the producer (setmaxnreg down to 40 registers); its warp 0 fills K/V tiles of
//    128 keys into kStages shared-memory stages. A tile that lies wholly below kv_end is fetched
//    with the bulk tensor copy engine: one cp.async.bulk.tensor per (page, 64-column half) of K
//    and of V, the cache seen as a 2D tensor [slots, num_kv_heads * 128] (tensor maps built on
//    the host, MakeKvTensorMap), 128-byte swizzle, completing on the stage's "full" mbarrier
//    with the byte count. The one partial tile a block can have (kv_end not a multiple of 128)
//    is gathered with cp.async instead, zero-filling keys >= kv_end (their block-table entries
//    are never read, and garbage such as NaN in unwritten slots never reaches P·V).
//  - warpgroups 1 and 2 are consumers (setmaxnreg up to 232), 64 query rows each. Per tile n a
//    consumer issues S(n) = Q·K(n)ᵀ and O += P(n-1)·V(n-1) back to back, waits only for S(n),
//    runs the online softmax of tile n while P·V still runs, then rescales O (the intra-warpgroup
//    overlap of attention_prefill_sm90.cuh's pipelined kernel). The two consumers take turns
//    issuing (named barriers 2 and 3, "ping-pong"): while one runs its softmax the tensor cores
//    work on the other's matrix products. Both consumers visit every tile (a tile past a
//    warpgroup's causal range is fully masked and leaves its state unchanged), so their turns
//    stay paired. Each consumer warp signals the stage's "empty" mbarrier once its P·V on it
//    retired.
#pragma once

#include <cuda.h>  // CUtensorMap (a plain 128-byte struct; no driver library needed)

#include "kernels/attention_prefill_sm90.cuh"

namespace kiln::kernels {

struct Sm90TmaConfig {
  static constexpr int kBlockM = 128;
  static constexpr int kBlockN = 128;
  static constexpr int kStages = 3;
  static constexpr int kThreads = 384;
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
  static constexpr uint32_t kQHalfBytes = kBlockM * 128;   // [128 rows][64 columns] bf16
  static constexpr uint32_t kKvHalfBytes = kBlockN * 128;  // [128 keys][64 columns] bf16
  static constexpr uint32_t kKvTileBytes = 2 * kKvHalfBytes;
  // Q + (K, V) × kStages + 1 KB to align the base to the 1024-byte swizzle period: 225 KB.
  static constexpr size_t kSmemBytes = 2 * kQHalfBytes + 2 * kStages * kKvTileBytes + 1024;
};

__device__ __forceinline__ void MbarArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

// 2D bulk tensor copy of one box at (c0 = column, c1 = row) into shared memory at dst, completing
// `bar`'s transaction count.
__device__ __forceinline__ void TmaLoad2d(uint32_t dst, const CUtensorMap* map, int c0, int c1,
                                          uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}

__device__ __forceinline__ void NamedBarSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void NamedBarArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

template <int kRegs>
__device__ __forceinline__ void SetMaxNregDec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void SetMaxNregInc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// Producer (one warp): fills stage n % kStages with K/V tile n for every tile of the block.
__device__ __forceinline__ void Sm90TmaProduce(const CUtensorMap* k_map, const CUtensorMap* v_map,
                                               const PagedAttentionParams<__nv_bfloat16>& p,
                                               const Sm90TileSource& src, int kvh, int num_tiles,
                                               uint32_t s_k, uint32_t s_v, uint64_t* bar_full,
                                               uint64_t* bar_empty, int lane) {
  using Cfg = Sm90TmaConfig;
  const int log2_bs = src.log2_block_size;
  const int block_mask = (1 << log2_bs) - 1;
  const int rows = min(1 << log2_bs, Cfg::kBlockN);  // rows per copy (one page, or the tile)
  const int copies = Cfg::kBlockN / rows;
  for (int n = 0; n < num_tiles; ++n) {
    const int s = n % Cfg::kStages;
    const uint32_t full = SmemAddr(&bar_full[s]);
    MbarWait(SmemAddr(&bar_empty[s]), ((n / Cfg::kStages) & 1) ^ 1);
    const uint32_t dst_k = s_k + s * Cfg::kKvTileBytes;
    const uint32_t dst_v = s_v + s * Cfg::kKvTileBytes;
    const int key0 = n * Cfg::kBlockN;
    if (key0 + Cfg::kBlockN <= src.kv_end) {
      if (lane == 0) MbarArriveExpectTx(full, 2 * Cfg::kKvTileBytes);
      __syncwarp();
      for (int i = lane; i < 2 * copies; i += 32) {
        const int c = i >> 1;
        const int half = i & 1;
        const int key = key0 + c * rows;
        const int slot = src.block_table[key >> log2_bs] << log2_bs | (key & block_mask);
        const uint32_t off = half * Cfg::kKvHalfBytes + c * rows * 128;
        const int col = kvh * 128 + half * 64;
        TmaLoad2d(dst_k + off, k_map, col, slot, full);
        TmaLoad2d(dst_v + off, v_map, col, slot, full);
      }
    } else {
      Sm90LoadKv<Cfg::kBlockN, 32>(p, src, kvh, key0, dst_k, dst_v, lane);
      CpAsyncCommit();
      CpAsyncWait<0>();
      FenceProxyAsyncShared();
      __syncwarp();
      if (lane == 0) MbarArrive(full);
    }
  }
}

__global__ void __launch_bounds__(384, 1)
    PagedAttentionPrefillSm90TmaKernel(const __grid_constant__ CUtensorMap k_map,
                                       const __grid_constant__ CUtensorMap v_map,
                                       PagedAttentionParams<__nv_bfloat16> p, int min_q_len,
                                       int log2_block_size) {
  using Cfg = Sm90TmaConfig;
  constexpr int kBlockN = Cfg::kBlockN;
  constexpr int kBlockM = Cfg::kBlockM;
  constexpr int kStages = Cfg::kStages;
  constexpr int kDTiles = 128 / 8;
  extern __shared__ unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t bar_full[kStages], bar_empty[kStages];
  const uint32_t s_q = (SmemAddr(smem_raw) + 1023u) & ~1023u;
  const uint32_t s_k = s_q + 2 * Cfg::kQHalfBytes;
  const uint32_t s_v = s_k + kStages * Cfg::kKvTileBytes;

  // Grid (head, query tile, sequence): the first wave takes the longest tiles of every head, and
  // the q heads of one KV group, adjacent in launch order, read the same K/V tiles from L2.
  const PrefillBlock blk =
      LocatePrefillBlockAt<kBlockM>(p, min_q_len, gridDim.y - 1 - blockIdx.y, blockIdx.x);
  if (!blk.valid) return;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const Sm90TileSource src = MakeTileSource<kBlockM>(p, blk, log2_block_size);
  const int num_tiles = (blk.kv_end + kBlockN - 1) / kBlockN;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      MbarInit(SmemAddr(&bar_full[s]), 1);
      MbarInit(SmemAddr(&bar_empty[s]), 8);  // one arrival per consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (tid < 128) {  // producer warpgroup
    SetMaxNregDec<Cfg::kProducerRegs>();
    if (tid < 32) {
      Sm90TmaProduce(&k_map, &v_map, p, src, blk.kvh, num_tiles, s_k, s_v, bar_full, bar_empty,
                     lane);
    }
    return;
  }
  SetMaxNregInc<Cfg::kConsumerRegs>();
  const int ctid = tid - 128;
  const int warp = ctid >> 5;  // consumer warp 0..7
  const int wg = warp >> 2;    // consumer warpgroup 0..1
  Sm90LoadQ<kBlockM, 256>(p, src, s_q, ctid);
  CpAsyncCommit();
  CpAsyncWait<0>();
  FenceProxyAsyncShared();
  NamedBarSync(1, 256);
  // Ping-pong: warpgroup wg issues its matrix products between NamedBarSync(2 + wg) and
  // NamedBarArrive(2 + other); warpgroup 0 takes the first turn.
  const int my_turn = 2 + wg;
  const int other_turn = 2 + (wg ^ 1);
  if (wg == 1) NamedBarArrive(2, 256);

  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int row_lo = blk.m0 + wg * 64 + (warp & 3) * 16 + (lane >> 2);
  const int warp_first_pos = blk.ctx_start + blk.m0 + wg * 64 + (warp & 3) * 16;
  const uint32_t q_rows = s_q + wg * 64 * 128;
  auto stage_k = [&](int n) { return s_k + (n % kStages) * Cfg::kKvTileBytes; };
  auto stage_v = [&](int n) { return s_v + (n % kStages) * Cfg::kKvTileBytes; };
  auto release = [&](int n) {
    __syncwarp();
    if (lane == 0) MbarArrive(SmemAddr(&bar_empty[n % kStages]));
  };
  auto wait_full = [&](int n) { MbarWait(SmemAddr(&bar_full[n % kStages]), (n / kStages) & 1); };

  float o_acc[kDTiles * 4];
#pragma unroll
  for (int i = 0; i < kDTiles * 4; ++i) o_acc[i] = 0.0f;
  AttentionRowState st{-CUDART_INF_F, -CUDART_INF_F,          0.0f,
                       0.0f,          blk.ctx_start + row_lo, blk.ctx_start + row_lo + 8};
  uint32_t p_frag[kBlockN / 16][4];  // P of the previous tile, the A operand of its P·V

  wait_full(0);
  {
    float s_acc[kBlockN / 2];
    NamedBarSync(my_turn, 256);
    WgmmaFenceOperand(o_acc);
    WgmmaFence();
    Sm90IssueQkT<kBlockN>(s_acc, q_rows, Cfg::kQHalfBytes, stage_k(0));
    WgmmaCommit();
    NamedBarArrive(other_turn, 256);
    WgmmaWait<0>();
    WgmmaFenceOperand(s_acc);
    float corr_lo, corr_hi;  // O is zero: nothing to rescale
    OnlineSoftmaxStep<kBlockN>(s_acc, p_frag, st, 0, kBlockN - 1 > warp_first_pos, scale_log2, lane,
                               corr_lo, corr_hi);
  }
  // p_prev holds P(n - 1) (read by the in-flight P·V(n - 1)), p_new receives P(n); the arrays
  // swap roles every iteration (unrolled by two), so nothing writes a register an in-flight
  // wgmma reads.
  auto iteration = [&](int n, uint32_t(&p_prev)[kBlockN / 16][4],
                       uint32_t(&p_new)[kBlockN / 16][4]) {
    wait_full(n);
    float s_acc[kBlockN / 2];
    NamedBarSync(my_turn, 256);
    WgmmaFenceOperand(o_acc);
    WgmmaFence();
    Sm90IssueQkT<kBlockN>(s_acc, q_rows, Cfg::kQHalfBytes, stage_k(n));
    WgmmaCommit();
    Sm90IssuePv<kBlockN>(o_acc, p_prev, stage_v(n - 1));
    WgmmaCommit();
    NamedBarArrive(other_turn, 256);
    WgmmaWait<1>();  // S(n) done; P·V(n - 1) runs on under the softmax
    WgmmaFenceOperand(s_acc);
    const int key0 = n * kBlockN;
    float corr_lo, corr_hi;
    OnlineSoftmaxStep<kBlockN>(s_acc, p_new, st, key0, key0 + kBlockN - 1 > warp_first_pos,
                               scale_log2, lane, corr_lo, corr_hi);
    WgmmaWait<0>();
    WgmmaFenceOperand(o_acc);
    release(n - 1);
    RescaleO<kDTiles>(o_acc, corr_lo, corr_hi);
  };
  auto last_pv = [&](const uint32_t(&p_last)[kBlockN / 16][4]) {
    NamedBarSync(my_turn, 256);
    WgmmaFenceOperand(o_acc);
    WgmmaFence();
    Sm90IssuePv<kBlockN>(o_acc, p_last, stage_v(num_tiles - 1));
    WgmmaCommit();
    NamedBarArrive(other_turn, 256);
    WgmmaWait<0>();
    WgmmaFenceOperand(o_acc);
    release(num_tiles - 1);
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
  // Warpgroup 1's last NamedBarArrive(2) (one more than warpgroup 0's turns, counting its
  // opening arrive) is consumed here, so no barrier is left with pending arrivals.
  if (wg == 0) NamedBarSync(2, 256);
  WriteOutputRows<kDTiles>(p, o_acc, st, blk.q_start, blk.q_len, row_lo, blk.head, lane);
}

}  // namespace kiln::kernels
