// SkinnyGemm kernel (see skinny_gemm.h).
//
// Block = kSkinnyWarps warps = kTileM output features (kFTiles 8-feature tiles per warp); the
// block walks its k range in iterations of kIterK = 32 · kVecs features. Per mma.sync
// m16n8k16, x is operand A (16 tokens × 16 k) and W operand B (16 k × 8 features).
//
// W straight from global memory into registers: lane (g = lane / 4, t = lane % 4) loads, for
// feature g of each 8-feature tile, the 16-byte vectors 4v + t (v < kVecs) of the iteration's
// kIterK-wide slice, i.e. physical k ∈ 32v + 8t + [0, 8) (+ it · kIterK). A dot product does not
// care about the order of k, so the mma's logical k is permuted: for mma step s ∈ {0, 1}, b0 =
// word 2s of the vector (physical k 32v + 8t + 4s + {0, 1}) and b1 = word 2s + 1 (+ 2 + {0, 1}):
// an aligned register pair of the loaded vector, so W needs no register moves at all.
//
// A must hold the same physical k: a0 / a1 = x[token g / g + 8][32v + 8t + 4s + {0, 1}], a2 / a3
// = x[token g / g + 8][32v + 8t + 4s + 2 + {0, 1}]. x is staged per block in shared memory with
// cp.async (kStages-deep ring of [16·kTTiles tokens × kIterK] slices), each 32-k group (16 words)
// stored word-transposed: position 4m + t holds word 4t + m. One ldmatrix.x4 (matrices: tokens
// 0–7 / 8–15 × positions 4·2s… / 4·(2s+1)…) then yields exactly a0..a3 of step s. Rows are padded
// to 16 mod 128 bytes, so ldmatrix's eight 16-byte rows hit distinct banks; the 4-byte cp.asyncs
// of one warp cover one token's 32 consecutive words (coalesced reads, distinct banks). Tokens >=
// n are zero rows, never read from global memory and never stored.
//
// W keeps kDepth iterations in flight per lane (a register ring of kDepth + 1 buffers) while the
// current one is multiplied; the 256-byte L2 prefetch hint streams the rows further ahead.
//
// PDL: the first iterations' weight loads are issued before PdlWait; x, the workspace and y are
// touched only after it; PdlLaunchDependents after the main loop (late trigger, as in gemv.cuh).
// Split K (skinny_gemm.h): block (tile, split) stores its float32 accumulators in mma-fragment
// order to the workspace (one float4 per thread and fragment, coalesced), then the tile's last
// block (atomic counter) sums the splits in index order and stores y.
#pragma once

#include "kernels/common.cuh"
#include "kernels/gemv.cuh"  // GemvLoadStreaming
#include "kernels/pdl.cuh"
#include "kernels/skinny_gemm.h"

namespace kiln::kernels {

constexpr int kSkinnyWarps = 4;
constexpr int kSkinnyStages = 3;
// Split counters at the start of the workspace (ints); partial sums follow at kSkinnyCounterBytes.
constexpr int kSkinnyCounterSlots = 1024;
constexpr size_t kSkinnyCounterBytes = kSkinnyCounterSlots * sizeof(int);

template <int kFTiles, int kVecs>
struct SkinnyConfig {
  static constexpr int kTileM = kSkinnyWarps * 8 * kFTiles;  // output features per block
  static constexpr int kIterK = 32 * kVecs;                  // k per main-loop iteration
  // Shared-memory row stride of one token's slice: 16 mod 128 bytes.
  static constexpr int kRowBytes = kIterK * 2 + 16;
  static constexpr size_t SmemBytes(int t_tiles) {
    return static_cast<size_t>(kSkinnyStages) * 16 * t_tiles * kRowBytes;
  }
};

// 4-byte global → shared copy (x's word-transposed staging).
__device__ __forceinline__ void SkinnyCpAsync4(uint32_t smem_addr, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr), "l"(gmem));
}

// Occupancy: 4 blocks per SM for the default tile (the split-K grid targets 4 per SM), else 3.
template <int kFTiles, int kVecs, int kDepth, int kTTiles, typename OutT>
__global__ void __launch_bounds__(kSkinnyWarps * 32, kFTiles == 2 && kVecs == 2 ? 4 : 3)
    SkinnyGemmKernel(SkinnyGemmParams<OutT> p, int splits, int iters) {
  using Cfg = SkinnyConfig<kFTiles, kVecs>;
  constexpr int kIterK = Cfg::kIterK;
  constexpr int kRowBytes = Cfg::kRowBytes;
  constexpr int kTokens = 16 * kTTiles;
  constexpr int kStageBytes = kTokens * kRowBytes;
  constexpr int kRowWords = kIterK / 2;  // 32-bit words of one token's slice
  extern __shared__ __align__(16) unsigned char skinny_smem[];
  __shared__ int skinny_is_last;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int tile = blockIdx.x;
  const int split = blockIdx.y;
  const int it0 = static_cast<int>(static_cast<int64_t>(split) * iters / splits);
  const int it1 = static_cast<int>(static_cast<int64_t>(split + 1) * iters / splits);
  const int64_t row0 = static_cast<int64_t>(tile) * Cfg::kTileM + warp * 8 * kFTiles;

  // This lane's weight rows (feature g of each 8-feature tile; 16-byte vector t); rows past m
  // read row m - 1.
  const uint4* w_rows[kFTiles];
#pragma unroll
  for (int f = 0; f < kFTiles; ++f) {
    const int64_t row = min(row0 + 8 * f + g, p.m - 1);
    w_rows[f] = reinterpret_cast<const uint4*>(p.w + row * p.k) + t;
  }
  // Vector group v of iteration `it` exists when its 32 k lie inside k (k % 32 == 0); uniform
  // over the block.
  auto group_valid = [&](int it, int v) {
    return static_cast<int64_t>(it) * kIterK + 32 * v < p.k;
  };
  using WRegs = uint4[kFTiles][kVecs];
  auto load_w = [&](int it, WRegs& dst) {
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      if (group_valid(it, v)) {
        const int64_t i = static_cast<int64_t>(it) * (kIterK / 8) + 4 * v;
#pragma unroll
        for (int f = 0; f < kFTiles; ++f) dst[f][v] = GemvLoadStreaming(w_rows[f] + i);
      }
    }
  };
  // x staging: thread i copies word w = i % kRowWords of tokens i / kRowWords + q · kTokPass;
  // word u = 4t' + m of a 32-k group goes to position 4m + t' (see the top of this file). The
  // addresses are fixed per thread up to the iteration's offset (no per-copy index math).
  constexpr int kTokPass = kSkinnyWarps * 32 / kRowWords;
  static_assert(kSkinnyWarps * 32 % kRowWords == 0, "whole tokens per pass");
  const int x_word = threadIdx.x % kRowWords;
  const int x_tok0 = threadIdx.x / kRowWords;
  const int x_u = x_word & 15;
  const uint32_t x_dst0 = SmemAddr(skinny_smem) + x_tok0 * kRowBytes +
                          4 * ((x_word & ~15) + 4 * (x_u & 3) + (x_u >> 2));
  const __nv_bfloat16* x_src0 = p.x + x_tok0 * p.ldx + 2 * x_word;
  auto stage_x = [&](int it) {
    const int64_t k0 = static_cast<int64_t>(it) * kIterK;
    if (k0 + 2 * x_word >= p.k) return;
    const uint32_t dst = x_dst0 + (it % kSkinnyStages) * kStageBytes;
    const __nv_bfloat16* src = x_src0 + k0;
#pragma unroll
    for (int q = 0; q < kTokens / kTokPass; ++q) {
      if (x_tok0 + q * kTokPass < p.n) {
        SkinnyCpAsync4(dst + q * kTokPass * kRowBytes, src + q * kTokPass * p.ldx);
      }
    }
  };

  constexpr int kBufs = kDepth + 1;
  WRegs w_ring[kBufs];
#pragma unroll
  for (int b = 0; b < kDepth; ++b) {
    if (it0 + b < it1) load_w(it0 + b, w_ring[b]);
  }
  // Tokens n..kTokens: zero rows in every stage (shared memory only, legal before PdlWait).
  {
    const int pad_vecs = (kTokens - p.n) * (kRowBytes / 16);
    for (int i = threadIdx.x; i < kSkinnyStages * pad_vecs; i += kSkinnyWarps * 32) {
      const int stage = i / pad_vecs;
      const int j = i % pad_vecs;
      reinterpret_cast<uint4*>(skinny_smem + stage * kStageBytes + p.n * kRowBytes)[j] =
          uint4{0, 0, 0, 0};
    }
  }
  PdlWait();
#pragma unroll
  for (int s = 0; s < kSkinnyStages - 1; ++s) {
    if (it0 + s < it1) stage_x(it0 + s);
    CpAsyncCommit();
  }

  float acc[kFTiles][kTTiles][4] = {};
  // ldmatrix row address of this lane: matrix q = lane / 8 (tokens +8 for odd q, positions
  // +4 words for q >= 2), row lane % 8.
  const uint32_t lds_lane =
      SmemAddr(skinny_smem) + ((lane & 7) + 8 * ((lane >> 3) & 1)) * kRowBytes + 16 * (lane >> 4);
  // (token tile j, vector group v) combos, j-major, in chunks of whole tiles (up to 4 combos or
  // one tile): the chunk's A fragments first, then its mmas ordered so that an accumulator's next
  // update is kChunk · kFTiles / kVecs mmas later or more (hides the tensor pipe's latency).
  // Every accumulator sees the same order, (s, v) = (0, 0), (0, 1), ..., (1, 0), ..., whatever
  // kTTiles is: a row's result does not depend on n (batch invariance, tested).
  constexpr int kCombos = kVecs * kTTiles;
  constexpr int kChunk = kVecs >= 4 ? kVecs : (kCombos < 4 ? kCombos : 4);
  static_assert(kCombos % kChunk == 0 && kChunk % kVecs == 0, "whole tiles per chunk");
  auto compute = [&](int it, const WRegs& w) {
    const uint32_t xs = lds_lane + (it % kSkinnyStages) * kStageBytes;
#pragma unroll
    for (int c0 = 0; c0 < kCombos; c0 += kChunk) {
      uint32_t a[kChunk][2][4];
#pragma unroll
      for (int c = 0; c < kChunk; ++c) {
        const int j = (c0 + c) / kVecs;
        const int v = (c0 + c) % kVecs;
        if (group_valid(it, v)) {
#pragma unroll
          for (int s = 0; s < 2; ++s) {
            LdMatrixX4(a[c][s], xs + j * 16 * kRowBytes + 64 * v + 32 * s);
          }
        }
      }
#pragma unroll
      for (int s = 0; s < 2; ++s) {
#pragma unroll
        for (int c = 0; c < kChunk; ++c) {
          const int j = (c0 + c) / kVecs;
          const int v = (c0 + c) % kVecs;
          if (!group_valid(it, v)) continue;
#pragma unroll
          for (int f = 0; f < kFTiles; ++f) {
            const uint4& wv = w[f][v];
            MmaBf16(acc[f][j], a[c][s], s == 0 ? wv.x : wv.z, s == 0 ? wv.y : wv.w);
          }
        }
      }
    }
  };
  // One iteration: weights kDepth iterations ahead in flight, x slice `it` ready, slice
  // it + kStages - 1 requested.
  auto step = [&](int it, const WRegs& cur, WRegs& ahead) {
    if (it + kDepth < it1) load_w(it + kDepth, ahead);
    CpAsyncWait<kSkinnyStages - 2>();
    __syncthreads();  // slice `it` visible to all; slice it - 1 no longer read by anyone
    if (it + kSkinnyStages - 1 < it1) stage_x(it + kSkinnyStages - 1);
    CpAsyncCommit();
    compute(it, cur);
  };
  // Register ring of kDepth + 1 weight buffers: iteration it0 + q uses buffer q % kBufs.
  for (int it = it0; it < it1; it += kBufs) {
#pragma unroll
    for (int b = 0; b < kBufs; ++b) {
      if (it + b < it1) step(it + b, w_ring[b], w_ring[(b + kDepth) % kBufs]);
    }
  }
  CpAsyncWait<0>();
  PdlLaunchDependents();  // late trigger (gemv.cuh)

  // Accumulator e of fragment (f, j): token 16j + g + 8 (e / 2), feature row0 + 8f + 2t + e % 2.
  auto store = [&](int f, int j, const float(&v)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t o = row0 + 8 * f + 2 * t + (e & 1);
      const int tok = 16 * j + g + 8 * (e >> 1);
      if (o < p.m && tok < p.n) {
        float r = v[e];
        if (p.bias != nullptr) r += ToFloat(p.bias[o]);
        p.y[tok * p.ldy + o] = FromFloat<OutT>(r);
      }
    }
  };
  if (splits == 1) {
#pragma unroll
    for (int f = 0; f < kFTiles; ++f) {
#pragma unroll
      for (int j = 0; j < kTTiles; ++j) store(f, j, acc[f][j]);
    }
    return;
  }

  // Split K: partials of block (tile, split) at [(tile · splits + split) · kFrags + fr][thread].
  constexpr int kFrags = kFTiles * kTTiles;
  int* counters = static_cast<int*>(p.workspace);
  float4* partials =
      reinterpret_cast<float4*>(static_cast<unsigned char*>(p.workspace) + kSkinnyCounterBytes);
  auto part = [&](int s, int fr) {
    return partials +
           ((static_cast<int64_t>(tile) * splits + s) * kFrags + fr) * (kSkinnyWarps * 32) +
           threadIdx.x;
  };
#pragma unroll
  for (int f = 0; f < kFTiles; ++f) {
#pragma unroll
    for (int j = 0; j < kTTiles; ++j) {
      const float* a = acc[f][j];
      __stcg(part(split, f * kTTiles + j), make_float4(a[0], a[1], a[2], a[3]));
    }
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const int arrived = atomicAdd(&counters[tile], 1);
    skinny_is_last = arrived == splits - 1;
    if (skinny_is_last) atomicExch(&counters[tile], 0);  // every split has arrived: reset
  }
  __syncthreads();
  if (!skinny_is_last) return;
  __threadfence();
  // Sum the splits in index order; every fragment's load of split s is in flight at once.
  float sum[kFrags][4];
  for (int s = 0; s < splits; ++s) {
    float4 q[kFrags];
#pragma unroll
    for (int fr = 0; fr < kFrags; ++fr) q[fr] = __ldcg(part(s, fr));  // own split too: acc is dead
#pragma unroll
    for (int fr = 0; fr < kFrags; ++fr) {
      if (s == 0) {
        sum[fr][0] = q[fr].x, sum[fr][1] = q[fr].y, sum[fr][2] = q[fr].z, sum[fr][3] = q[fr].w;
      } else {
        sum[fr][0] += q[fr].x, sum[fr][1] += q[fr].y, sum[fr][2] += q[fr].z, sum[fr][3] += q[fr].w;
      }
    }
  }
#pragma unroll
  for (int fr = 0; fr < kFrags; ++fr) store(fr / kTTiles, fr % kTTiles, sum[fr]);
}

}  // namespace kiln::kernels
