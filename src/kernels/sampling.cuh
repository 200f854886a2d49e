// Sampling kernels (one block of 1024 threads per logits row); launched by
// sampling.cu, contract in sampling.h.
#pragma once

#include <cfloat>
#include <climits>

#include "kernels/common.cuh"
#include "kernels/sampling.h"

namespace kiln::kernels {
namespace sampling_detail {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

struct ArgBest {
  float value;
  int index;
};

// a before b in (value descending, index ascending) order; NaN never wins.
__device__ __forceinline__ bool Better(ArgBest a, ArgBest b) {
  return a.value > b.value || (a.value == b.value && a.index < b.index);
}

__device__ __forceinline__ int WarpSumInt(int v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ ArgBest WarpBest(ArgBest v) {
  for (int o = 16; o > 0; o >>= 1) {
    ArgBest other{__shfl_xor_sync(0xffffffffu, v.value, o), __shfl_xor_sync(0xffffffffu, v.index, o)};
    if (Better(other, v)) v = other;
  }
  return v;
}

// Block-wide reductions over kThreads threads (every thread gets the result); `scratch` holds
// kWarps entries. (Sums use common.cuh's BlockSum.)
__device__ float BlockMax(float v, float* scratch) {
  v = WarpMax(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < kWarps ? scratch[lane] : -INFINITY;
  return WarpMax(v);
}
__device__ int BlockSumInt(int v, int* scratch) {
  v = WarpSumInt(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < kWarps ? scratch[lane] : 0;
  return WarpSumInt(v);
}
__device__ ArgBest BlockBest(ArgBest v, float* fscratch, int* iscratch) {
  v = WarpBest(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) {
    fscratch[warp] = v.value;
    iscratch[warp] = v.index;
  }
  __syncthreads();
  v = lane < kWarps ? ArgBest{fscratch[lane], iscratch[lane]} : ArgBest{-INFINITY, INT_MAX};
  return WarpBest(v);
}

__device__ __forceinline__ double WarpSumDouble(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ double BlockSumDouble(double v, double* scratch) {
  v = WarpSumDouble(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < kWarps ? scratch[lane] : 0.0;
  return WarpSumDouble(v);
}

// Inclusive block scan of one value per thread; returns the thread's inclusive prefix and writes
// the block total to *total.
// Sums are in double, like the reference sampler's, so that the inverse-CDF boundaries agree with
// it even over a flat 150k-token distribution.
__device__ double BlockInclusiveScan(double v, double* scratch, double* total) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int o = 1; o < 32; o <<= 1) {
    const double n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double w = scratch[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const double n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    scratch[lane] = w;  // inclusive warp-sum prefix
  }
  __syncthreads();
  if (warp > 0) v += scratch[warp - 1];
  *total = scratch[kWarps - 1];
  return v;
}

// Pass 1: raw log-sum-exp, processed logits (mask, penalties, bans), then greedy argmax or
// temperature softmax probabilities into probs.
__global__ void __launch_bounds__(kThreads) ProcessKernel(SampleInputs in, SampleOutputs out,
                                                          int row0, float* lse_out, float* probs) {
  __shared__ float fscratch[kWarps];
  __shared__ double dscratch[kWarps];
  __shared__ int iscratch[kWarps];
  const int local = blockIdx.x;
  const int row = row0 + local;
  const int vocab = in.vocab_size;
  const SampleRowParams p = in.rows[row];
  const float* x = in.logits + static_cast<int64_t>(row) * vocab;
  float* y = probs + static_cast<int64_t>(local) * vocab;

  if (p.num_top_logprobs >= 0) {  // raw log-sum-exp, only when logprobs are reported
    float m = -INFINITY;
    for (int i = threadIdx.x; i < vocab; i += kThreads) m = fmaxf(m, x[i]);
    m = BlockMax(m, fscratch);
    double s = 0.0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) s += exp(static_cast<double>(x[i]) - m);
    s = BlockSumDouble(s, dscratch);
    if (threadIdx.x == 0) lse_out[local] = m + static_cast<float>(log(s));
  }

  const uint32_t* mask = p.bitmask_offset >= 0 ? in.bitmasks + p.bitmask_offset : nullptr;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    float v = x[i];
    if (mask != nullptr && ((mask[i >> 5] >> (i & 31)) & 1u) == 0) v = -INFINITY;
    y[i] = v;
  }
  __syncthreads();
  for (int e = p.penalty_begin + threadIdx.x; e < p.penalty_end; e += kThreads) {
    const int id = in.penalty_token_ids[e];
    const int count = in.penalty_output_counts[e];
    float v = y[id];
    if (p.repetition_penalty != 1.0f) v = v > 0.0f ? v / p.repetition_penalty : v * p.repetition_penalty;
    if (count > 0) v -= p.frequency_penalty * static_cast<float>(count) + p.presence_penalty;
    y[id] = v;
  }
  __syncthreads();
  for (int e = p.ban_begin + threadIdx.x; e < p.ban_end; e += kThreads) {
    y[in.banned_token_ids[e]] = -INFINITY;
  }
  __syncthreads();

  if (p.temperature <= 0.0f) {
    ArgBest best{-INFINITY, INT_MAX};
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const ArgBest c{y[i], i};
      if (Better(c, best)) best = c;
    }
    best = BlockBest(best, fscratch, iscratch);
    // -1: every token is banned or masked (the host turns it into InvalidArgument).
    if (threadIdx.x == 0) out.token_ids[row] = best.value > -INFINITY ? best.index : -1;
    return;
  }
  const float inv_t = 1.0f / p.temperature;
  float mt = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += kThreads) mt = fmaxf(mt, __fmul_rn(y[i], inv_t));
  mt = BlockMax(mt, fscratch);
  // exp as the reference computes it: float argument (no FMA contraction), correctly rounded.
  auto scaled_exp = [&](float v) {
    return static_cast<float>(exp(static_cast<double>(__fsub_rn(__fmul_rn(v, inv_t), mt))));
  };
  double z = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    if (y[i] > -INFINITY) z += scaled_exp(y[i]);
  }
  z = BlockSumDouble(z, dscratch);
  if (mt == -INFINITY) {
    if (threadIdx.x == 0) out.token_ids[row] = -1;  // every token banned or masked
    for (int i = threadIdx.x; i < vocab; i += kThreads) y[i] = 0.0f;
    return;
  }
  if (threadIdx.x == 0) out.token_ids[row] = 0;  // SelectKernel draws the real one
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    y[i] = y[i] > -INFINITY ? static_cast<float>(scaled_exp(y[i]) / z) : 0.0f;
  }
}

__global__ void FillSortInputsKernel(int32_t* ids, int32_t* offsets, int rows, int vocab) {
  const int64_t total = static_cast<int64_t>(rows) * vocab;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    ids[i] = static_cast<int32_t>(i % vocab);
  }
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t <= rows) offsets[t] = t * vocab;
}

// Pass 2 (random rows): cut the sorted probabilities to the top-k / top-p / min-p survivors and
// draw by inverse CDF.
__global__ void __launch_bounds__(kThreads) SelectKernel(SampleInputs in, SampleOutputs out,
                                                         int row0, const float* sorted_probs,
                                                         const int32_t* sorted_ids) {
  __shared__ float fscratch[kWarps];
  __shared__ int iscratch[kWarps];
  __shared__ double scan_scratch[kWarps];
  const int local = blockIdx.x;
  const int row = row0 + local;
  const SampleRowParams p = in.rows[row];
  if (p.temperature <= 0.0f) return;
  if (out.token_ids[row] == -1) return;  // flagged by ProcessKernel: nothing to draw from
  const int vocab = in.vocab_size;
  const float* sp = sorted_probs + static_cast<int64_t>(local) * vocab;
  const int32_t* sid = sorted_ids + static_cast<int64_t>(local) * vocab;

  int n = vocab;
  if (p.top_k > 0 && p.top_k < n) n = p.top_k;
  if (p.min_p > 0.0f) {
    const float threshold = p.min_p * sp[0];
    int count = 0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) count += sp[i] >= threshold ? 1 : 0;
    count = BlockSumInt(count, iscratch);
    n = min(n, max(count, 1));
  }
  if (p.top_p < 1.0f) {
    // First index whose inclusive prefix mass reaches top_p.
    double running = 0.0;
    int cut = vocab;
    for (int base = 0; base < n; base += kThreads) {
      const int i = base + threadIdx.x;
      const double v = i < n ? static_cast<double>(sp[i]) : 0.0;
      double tile_total;
      const double incl = running + BlockInclusiveScan(v, scan_scratch, &tile_total);
      const int hit = (i < n && incl >= p.top_p) ? i : INT_MAX;
      const ArgBest h = BlockBest(ArgBest{0.0f, hit}, fscratch, iscratch);
      if (h.index != INT_MAX) {
        cut = h.index + 1;
        break;
      }
      running += tile_total;
    }
    n = min(n, max(cut, 1));
  }
  double total = 0.0;
  for (int base = 0; base < n; base += kThreads) {
    const int i = base + threadIdx.x;
    double tile_total;
    BlockInclusiveScan(i < n ? static_cast<double>(sp[i]) : 0.0, scan_scratch, &tile_total);
    total += tile_total;
  }
  const double target = static_cast<double>(p.uniform) * total;
  double running = 0.0;
  int chosen = n - 1;
  for (int base = 0; base < n; base += kThreads) {
    const int i = base + threadIdx.x;
    double tile_total;
    const double incl = running + BlockInclusiveScan(i < n ? static_cast<double>(sp[i]) : 0.0, scan_scratch, &tile_total);
    const int hit = (i < n && target < incl) ? i : INT_MAX;
    const ArgBest h = BlockBest(ArgBest{0.0f, hit}, fscratch, iscratch);
    if (h.index != INT_MAX) {
      chosen = h.index;
      break;
    }
    running += tile_total;
  }
  if (threadIdx.x == 0) out.token_ids[row] = sid[chosen];
}

// Pass 3: logprobs of the chosen, top-N and requested ids from the raw logits.
__global__ void __launch_bounds__(kThreads) LogprobsKernel(SampleInputs in, SampleOutputs out,
                                                           int row0, const float* lse_in) {
  __shared__ float fscratch[kWarps];
  __shared__ int iscratch[kWarps];
  const int local = blockIdx.x;
  const int row = row0 + local;
  const SampleRowParams p = in.rows[row];
  if (p.num_top_logprobs < 0) return;
  const int vocab = in.vocab_size;
  const float* x = in.logits + static_cast<int64_t>(row) * vocab;
  const float lse = lse_in[local];
  const int32_t chosen = out.token_ids[row];
  if (threadIdx.x == 0) out.logprobs[row] = chosen >= 0 ? x[chosen] - lse : -INFINITY;
  for (int e = p.requested_begin + threadIdx.x; e < p.requested_end; e += kThreads) {
    out.requested_logprobs[e] = x[in.requested_token_ids[e]] - lse;
  }
  ArgBest prev{INFINITY, -1};
  for (int r = 0; r < p.num_top_logprobs; ++r) {
    ArgBest best{-INFINITY, INT_MAX};
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const ArgBest c{x[i], i};
      if (Better(prev, c) && Better(c, best)) best = c;
    }
    best = BlockBest(best, fscratch, iscratch);
    if (best.index == INT_MAX) best = ArgBest{-INFINITY, 0};
    if (threadIdx.x == 0) {
      out.top_ids[static_cast<int64_t>(row) * in.max_top_logprobs + r] = best.index;
      out.top_logprobs[static_cast<int64_t>(row) * in.max_top_logprobs + r] = best.value - lse;
    }
    prev = best;
  }
}

}  // namespace sampling_detail
}  // namespace kiln::kernels
