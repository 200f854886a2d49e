// The rows attention kernel (decode, short query runs, float32 and odd head dims) and the split
// combine kernel. See attention.h for the contract.
//
// Block = (query row t, KV head, KV split), 128 threads. The G = H / Hkv query heads of the KV
// head are processed together: each K/V tile (kTile keys) is loaded once into shared memory
// (cp.async, double-buffered, through the block table) and used by all G heads.
//   scores: thread ↔ (head g, key j) pairs; q pre-scaled by scale·log2(e) lives in shared memory
//   softmax: warp ↔ heads; online (running max m, sum l per head, base-2 exponentials)
//   P·V: thread ↔ (column pair, head subset); accumulators in registers
// With gridDim.z > 1 each split writes unnormalized partial outputs plus (m, l) to the workspace
// and AttentionCombineKernel merges them.
#pragma once

#include <math_constants.h>

#include "kernels/attention.h"
#include "kernels/attention_tile.cuh"
#include "kernels/common.cuh"
#include "kernels/pdl.cuh"

namespace kiln::kernels {

template <typename T, int D>
struct RowsConfig {
  static constexpr int kThreads = 128;
  static constexpr int kVe = kVecElems<T>;
  static constexpr int kChunks = D / kVe;  // 16-byte chunks per K/V row
  static constexpr int kTile = (D * sizeof(T) <= 256) ? 64 : 32;
  static constexpr int kRowStride = D + kVe;  // padded (elements) against bank conflicts
  static constexpr int kColPairs = D / 2;
  static constexpr int kHeadGroups = kThreads / kColPairs;
  static constexpr int kMaxHeadsPerThread = 8;
  static constexpr int kMaxGroupSize = kHeadGroups * kMaxHeadsPerThread;
  static_assert(D % kVe == 0 && kColPairs <= kThreads && kTile % 32 == 0);

  static size_t SmemBytes(int group_size) {
    return 2 * 2 * kTile * kRowStride * sizeof(T) +                   // K, V × 2 stages
           static_cast<size_t>(group_size) * D * sizeof(float) +      // q
           static_cast<size_t>(group_size) * kTile * sizeof(float) +  // scores / probs
           3 * static_cast<size_t>(group_size) * sizeof(float);       // m, l, corr
  }
};

struct RowsSplitWorkspace {
  float* o = nullptr;  // [splits, num_tokens, num_heads, head_dim]
  float* m = nullptr;  // [splits, num_tokens, num_heads] (base-2 running max)
  float* l = nullptr;  // [splits, num_tokens, num_heads]
};

// The work of one short-query block: query row t (within sequence seq) against keys
// [begin, end) of its context, for the KV head kvh and split `split`. Grid: x = query row within
// its sequence, y = sequence, z = KV head × split. valid = false: the block has nothing to do
// (a row past the sequence's end, or a sequence the prefill kernel owns).
struct ShortQueryBlock {
  bool valid;
  int seq, kvh, split, t, begin, end;
};

template <typename T>
__device__ __forceinline__ ShortQueryBlock LocateShortQueryBlock(const PagedAttentionParams<T>& p,
                                                                 int max_q_len, int num_splits,
                                                                 int tile) {
  ShortQueryBlock b{};
  b.seq = blockIdx.y;
  b.kvh = blockIdx.z / num_splits;
  b.split = blockIdx.z - b.kvh * num_splits;
  const int q_start = p.cu_seqlens_q[b.seq];
  const int q_len = p.cu_seqlens_q[b.seq + 1] - q_start;
  b.valid = static_cast<int>(blockIdx.x) < q_len && q_len <= max_q_len;
  if (!b.valid) return b;
  b.t = q_start + blockIdx.x;
  const int ctx = p.seq_lens[b.seq] - q_len + static_cast<int>(blockIdx.x) + 1;  // keys 0..ctx-1
  int chunk = (ctx + num_splits - 1) / num_splits;
  chunk = (chunk + tile - 1) / tile * tile;
  b.begin = b.split * chunk;
  b.end = min(ctx, b.begin + chunk);
  return b;
}

// An empty split (short context) contributes nothing: m = -inf, l = 0 for its heads.
template <typename T>
__device__ __forceinline__ void WriteEmptySplit(const PagedAttentionParams<T>& p,
                                                RowsSplitWorkspace ws, const ShortQueryBlock& b,
                                                int group) {
  for (int g = threadIdx.x; g < group; g += blockDim.x) {
    const int64_t idx =
        (static_cast<int64_t>(b.split) * p.num_tokens + b.t) * p.num_heads + b.kvh * group + g;
    ws.m[idx] = -CUDART_INF_F;
    ws.l[idx] = 0.0f;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(128)
    PagedAttentionRowsKernel(PagedAttentionParams<T> p, RowsSplitWorkspace ws, int max_q_len,
                             int num_splits, int log2_block_size) {
  using Cfg = RowsConfig<T, D>;
  constexpr int kTile = Cfg::kTile;
  constexpr int kVe = Cfg::kVe;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* s_k = reinterpret_cast<T*>(smem_raw);
  T* s_v = s_k + 2 * kTile * Cfg::kRowStride;
  float* s_q = reinterpret_cast<float*>(s_v + 2 * kTile * Cfg::kRowStride);
  const int G = p.num_heads / p.num_kv_heads;
  float* s_s = s_q + G * D;
  float* s_m = s_s + G * kTile;
  float* s_l = s_m + G;
  float* s_corr = s_l + G;

  PdlLaunchDependents();
  PdlWait();
  const ShortQueryBlock blk = LocateShortQueryBlock(p, max_q_len, num_splits, kTile);
  if (!blk.valid) return;
  const int seq = blk.seq, kvh = blk.kvh, split = blk.split, t = blk.t;
  const int begin = blk.begin, end = blk.end;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int h0 = kvh * G;
  if (begin >= end) {
    WriteEmptySplit(p, ws, blk, G);
    return;
  }

  const float scale_log2 = p.scale * 1.4426950408889634f;
  for (int i = tid; i < G * D; i += blockDim.x) {
    s_q[i] = ToFloat(p.q[t * p.q_stride + static_cast<int64_t>(h0) * D + i]) * scale_log2;
  }
  for (int g = tid; g < G; g += blockDim.x) {
    s_m[g] = -CUDART_INF_F;
    s_l[g] = 0.0f;
  }

  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  auto load_tile = [&](int tile, int stage) {
    GatherKvTile<T, kTile, D, Cfg::kThreads>(
        p, block_table, log2_block_size, kvh, begin + tile * kTile, end, SmemAddr(s_k),
        SmemAddr(s_v), tid, [&](int j, int c) {
          return static_cast<uint32_t>(((stage * kTile + j) * Cfg::kRowStride + c * kVe) *
                                       sizeof(T));
        });
  };

  // P·V ownership: column pair cp (columns 2cp, 2cp+1), heads hg, hg + kHeadGroups, ...
  const int cp = tid % Cfg::kColPairs;
  const int hg = tid / Cfg::kColPairs;
  // Threads past the last full head group (head_dim 80, 96, ...) own no output.
  const int group_limit = hg < Cfg::kHeadGroups ? G : 0;
  float acc[Cfg::kMaxHeadsPerThread][2];
#pragma unroll
  for (int i = 0; i < Cfg::kMaxHeadsPerThread; ++i) acc[i][0] = acc[i][1] = 0.0f;

  const int num_tiles = (end - begin + kTile - 1) / kTile;
  load_tile(0, 0);
  CpAsyncCommit();
  for (int n = 0; n < num_tiles; ++n) {
    const int stage = n & 1;
    if (n + 1 < num_tiles) load_tile(n + 1, stage ^ 1);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();

    // Scores (log2 domain).
    const T* k_tile = s_k + stage * kTile * Cfg::kRowStride;
    const int key0 = begin + n * kTile;
    for (int i = tid; i < G * kTile; i += blockDim.x) {
      const int g = i / kTile;
      const int j = i - g * kTile;
      float dot = -CUDART_INF_F;
      if (key0 + j < end) {
        dot = 0.0f;
        const T* k_row = k_tile + j * Cfg::kRowStride;
        const float* q_row = s_q + g * D;
#pragma unroll
        for (int c = 0; c < Cfg::kChunks; ++c) {
          float kv[kVe];
          LoadVec(k_row + c * kVe, kv);
#pragma unroll
          for (int e = 0; e < kVe; e += 4) {
            const float4 qv = *reinterpret_cast<const float4*>(q_row + c * kVe + e);
            dot += qv.x * kv[e] + qv.y * kv[e + 1] + qv.z * kv[e + 2] + qv.w * kv[e + 3];
          }
        }
      }
      s_s[g * kTile + j] = dot;
    }
    __syncthreads();

    // Online softmax, one warp per head.
    for (int g = warp; g < G; g += Cfg::kThreads / 32) {
      float* row = s_s + g * kTile;
      float mx = -CUDART_INF_F;
#pragma unroll
      for (int j = lane; j < kTile; j += 32) mx = fmaxf(mx, row[j]);
      mx = WarpMax(mx);
      const float m_old = s_m[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.0f;
#pragma unroll
      for (int j = lane; j < kTile; j += 32) {
        const float pr = FastExp2(row[j] - m_new);
        row[j] = pr;
        sum += pr;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float corr = FastExp2(m_old - m_new);
        s_m[g] = m_new;
        s_l[g] = s_l[g] * corr + sum;
        s_corr[g] = corr;
      }
    }
    __syncthreads();

    // P·V.
    const T* v_tile = s_v + stage * kTile * Cfg::kRowStride;
#pragma unroll
    for (int i = 0; i < Cfg::kMaxHeadsPerThread; ++i) {
      const int g = hg + i * Cfg::kHeadGroups;
      if (g < group_limit) {
        const float corr = s_corr[g];
        acc[i][0] *= corr;
        acc[i][1] *= corr;
      }
    }
    for (int j = 0; j < kTile; j += 4) {
      float v0[4], v1[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const T* vp = v_tile + (j + u) * Cfg::kRowStride + 2 * cp;
        v0[u] = ToFloat(vp[0]);
        v1[u] = ToFloat(vp[1]);
      }
#pragma unroll
      for (int i = 0; i < Cfg::kMaxHeadsPerThread; ++i) {
        const int g = hg + i * Cfg::kHeadGroups;
        if (g < group_limit) {
          const float4 pr = *reinterpret_cast<const float4*>(s_s + g * kTile + j);
          acc[i][0] += pr.x * v0[0] + pr.y * v0[1] + pr.z * v0[2] + pr.w * v0[3];
          acc[i][1] += pr.x * v1[0] + pr.y * v1[1] + pr.z * v1[2] + pr.w * v1[3];
        }
      }
    }
    __syncthreads();  // this stage and s_s are rewritten next iteration
  }

#pragma unroll
  for (int i = 0; i < Cfg::kMaxHeadsPerThread; ++i) {
    const int g = hg + i * Cfg::kHeadGroups;
    if (g >= group_limit) continue;
    const int h = h0 + g;
    if (num_splits == 1) {
      const float inv_l = 1.0f / s_l[g];
      T* o = p.out + t * p.out_stride + static_cast<int64_t>(h) * D + 2 * cp;
      o[0] = FromFloat<T>(acc[i][0] * inv_l);
      o[1] = FromFloat<T>(acc[i][1] * inv_l);
    } else {
      const int64_t idx = (static_cast<int64_t>(split) * p.num_tokens + t) * p.num_heads + h;
      ws.o[idx * D + 2 * cp] = acc[i][0];
      ws.o[idx * D + 2 * cp + 1] = acc[i][1];
      if (cp == 0) {
        ws.m[idx] = s_m[g];
        ws.l[idx] = s_l[g];
      }
    }
  }
}

// Merges the splits of the short-query kernels. Grid: x = query row within its sequence,
// y = sequence, z = query head; thread = column.
template <typename T>
__global__ void AttentionCombineKernel(PagedAttentionParams<T> p, RowsSplitWorkspace ws,
                                       int max_q_len, int num_splits) {
  PdlLaunchDependents();
  PdlWait();
  const int seq = blockIdx.y;
  const int h = blockIdx.z;
  const int q_start = p.cu_seqlens_q[seq];
  const int q_len = p.cu_seqlens_q[seq + 1] - q_start;
  if (static_cast<int>(blockIdx.x) >= q_len || q_len > max_q_len) return;
  const int t = q_start + blockIdx.x;
  float m_max = -CUDART_INF_F;
  for (int s = 0; s < num_splits; ++s) {
    m_max = fmaxf(m_max, ws.m[(static_cast<int64_t>(s) * p.num_tokens + t) * p.num_heads + h]);
  }
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const int64_t idx = (static_cast<int64_t>(s) * p.num_tokens + t) * p.num_heads + h;
      const float m = ws.m[idx];
      if (m == -CUDART_INF_F) continue;
      const float w = FastExp2(m - m_max);
      num += w * ws.o[idx * p.head_dim + d];
      den += w * ws.l[idx];
    }
    p.out[t * p.out_stride + static_cast<int64_t>(h) * p.head_dim + d] = FromFloat<T>(num / den);
  }
}

}  // namespace kiln::kernels
