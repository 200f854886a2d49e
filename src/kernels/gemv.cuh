// Gemv kernels (see gemv.h). One warp per kWarpRows output rows, kGemvWarps warps per block (small
// blocks, so the last wave of a call is spread evenly over the SMs). The vectorized kernel keeps
// kUnroll × kWarpRows 16-byte weight loads in flight per lane (ld.global.nc, no L1 allocation,
// 256-byte L2 prefetch), reads the matching x vectors through L1, accumulates in float32 per lane
// and reduces across the warp once at the end. Rows past out_features clamp their loads to the
// last row and skip the store.
//
// Programmatic dependent launch (pdl.cuh): the first round of weight loads is issued before
// PdlWait (weights never depend on the previous kernel), and PdlLaunchDependents comes only after
// the main loop. Measured on H100 (Qwen2-7B decode, PERFORMANCE.md): an early trigger lets the
// next GEMV's blocks fill the SMs that free up first, unbalancing it (6.17 vs 5.79 ms per step);
// a grid of one resident wave splitting the bytes statically (balanced whatever the placement)
// loses to blocks that start late behind a co-resident small kernel (6.8 ms); an extra L2 bulk
// prefetch of the row's next rounds before PdlWait costs more than it hides (6.17 ms).
#pragma once

#include "kernels/common.cuh"
#include "kernels/gemv.h"
#include "kernels/pdl.cuh"

namespace kiln::kernels {

constexpr int kGemvWarps = 4;

// Streams 16 bytes of weights: read-only path, no L1 allocation (each byte is used once).
__device__ __forceinline__ uint4 GemvLoadStreaming(const uint4* ptr) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(ptr));
  return v;
}

// Asks the TMA unit to bring [ptr, ptr + bytes) into L2 (16-byte aligned, bytes % 16 == 0).
__device__ __forceinline__ void GemvPrefetchL2(const void* ptr, int64_t bytes) {
  if (bytes > 0) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(ptr),
                 "r"(static_cast<uint32_t>(bytes))
                 : "memory");
  }
}

// 8 packed bf16 → float32 (bf16 is the top half of a float32).
__device__ __forceinline__ void GemvUnpack(const uint4& v, float* out) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(words[i] << 16);
    out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

template <typename OutT>
__device__ __forceinline__ void GemvStore(const GemvParams<OutT>& p, int r, int64_t o, float v) {
  if (p.bias != nullptr) v += ToFloat(p.bias[o]);
  p.y[r * p.ldy + o] = FromFloat<OutT>(v);
}

// Requires in_features % 8 == 0, ldx % 8 == 0, 16-byte aligned x and w; rows == kRows.
template <int kRows, int kWarpRows, int kUnroll, typename OutT>
__global__ void __launch_bounds__(kGemvWarps * 32) GemvVecKernel(GemvParams<OutT> p) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  const int64_t row0 = warp * kWarpRows;
  if (row0 >= p.out_features) {  // the whole warp leaves together
    PdlWait();
    return;
  }
  const int64_t num_vecs = p.in_features / 8;
  const uint4* w_rows[kWarpRows];
#pragma unroll
  for (int j = 0; j < kWarpRows; ++j) {
    const int64_t o = min(row0 + j, p.out_features - 1);
    w_rows[j] = reinterpret_cast<const uint4*>(p.w + o * p.in_features);
  }
  const uint4* x_rows[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) x_rows[r] = reinterpret_cast<const uint4*>(p.x + r * p.ldx);

  // Prefetch window: vectors [round * kRoundVecs, (round + kAhead) * kRoundVecs) of each row.
  constexpr int64_t kRoundVecs = 32 * kUnroll;
  constexpr int64_t kAhead = 2;
  const bool prefetch = p.l2_prefetch && lane == 0;
  if (prefetch) {
#pragma unroll
    for (int j = 0; j < kWarpRows; ++j) {
      GemvPrefetchL2(w_rows[j], min(num_vecs, kAhead * kRoundVecs) * 16);
    }
  }

  uint4 wv[kUnroll][kWarpRows];
  auto load_round = [&](int64_t base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * 32;
      if (i < num_vecs) {
#pragma unroll
        for (int j = 0; j < kWarpRows; ++j) wv[u][j] = GemvLoadStreaming(w_rows[j] + i);
      }
    }
  };
  // The weights do not depend on the previous kernel: the first round streams in while it still
  // runs (PDL); x is read only after PdlWait.
  load_round(lane);
  PdlWait();

  float acc[kRows][kWarpRows] = {};
  for (int64_t base = lane; base < num_vecs; base += kRoundVecs) {
    if (prefetch) {
      const int64_t first = base + kAhead * kRoundVecs;  // lane 0: base is a round start
      if (first < num_vecs) {
#pragma unroll
        for (int j = 0; j < kWarpRows; ++j) {
          GemvPrefetchL2(w_rows[j] + first, min(kRoundVecs, num_vecs - first) * 16);
        }
      }
    }
    if (base != lane) load_round(base);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * 32;
      if (i < num_vecs) {
        float wf[kWarpRows][8];
#pragma unroll
        for (int j = 0; j < kWarpRows; ++j) GemvUnpack(wv[u][j], wf[j]);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float xf[8];
          GemvUnpack(__ldg(x_rows[r] + i), xf);
#pragma unroll
          for (int j = 0; j < kWarpRows; ++j) {
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][j] = fmaf(xf[e], wf[j][e], acc[r][j]);
          }
        }
      }
    }
  }
  // Late trigger: the next kernel's blocks are scheduled only once every block of this one has
  // streamed its weights, so they never pile onto the SMs that free up first.
  PdlLaunchDependents();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int j = 0; j < kWarpRows; ++j) acc[r][j] = WarpSum(acc[r][j]);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < kWarpRows; ++j) {
      const int64_t o = row0 + j;
      if (o >= p.out_features) break;
#pragma unroll
      for (int r = 0; r < kRows; ++r) GemvStore(p, r, o, acc[r][j]);
    }
  }
}

// Any shape and alignment: one warp per output row, element loads.
template <typename OutT>
__global__ void __launch_bounds__(kGemvWarps * 32) GemvScalarKernel(GemvParams<OutT> p) {
  const int lane = threadIdx.x & 31;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  PdlLaunchDependents();
  PdlWait();
  if (o >= p.out_features) return;
  const __nv_bfloat16* w_row = p.w + o * p.in_features;
  float acc[kGemvMaxRows] = {};
  for (int64_t i = lane; i < p.in_features; i += 32) {
    const float w = ToFloat(w_row[i]);
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) {
      if (r < p.rows) acc[r] = fmaf(ToFloat(p.x[r * p.ldx + i]), w, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
    if (r < p.rows) {
      const float v = WarpSum(acc[r]);
      if (lane == 0) GemvStore(p, r, o, v);
    }
  }
}

}  // namespace kiln::kernels
