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

// Calls f(i, v) for every i < vocab with v = probs[i] (a row of logits or probabilities): 16 elements per thread per iteration with
// all four 16-byte loads issued first (a row pass is bound by loads in flight, not by the work).
template <typename F>
__device__ __forceinline__ void ForEachValue(const float* probs, int vocab, F&& f) {
  if ((vocab & 3) == 0 && (reinterpret_cast<uintptr_t>(probs) & 15) == 0) {
    const float4* p4 = reinterpret_cast<const float4*>(probs);
    const int n4 = vocab >> 2;
    int v = threadIdx.x;
    for (; v + 3 * kThreads < n4; v += 4 * kThreads) {
      float4 x[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) x[u] = __ldcg(p4 + v + u * kThreads);
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = 4 * (v + u * kThreads);
        f(i, x[u].x);
        f(i + 1, x[u].y);
        f(i + 2, x[u].z);
        f(i + 3, x[u].w);
      }
    }
    for (; v < n4; v += kThreads) {
      const float4 x = __ldcg(p4 + v);
      f(4 * v, x.x);
      f(4 * v + 1, x.y);
      f(4 * v + 2, x.z);
      f(4 * v + 3, x.w);
    }
  } else {
    for (int i = threadIdx.x; i < vocab; i += kThreads) f(i, probs[i]);
  }
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
    ForEachValue(x, vocab, [&](int, float v) { m = fmaxf(m, v); });
    m = BlockMax(m, fscratch);
    double s = 0.0;
    ForEachValue(x, vocab, [&](int, float v) { s += exp(static_cast<double>(v) - m); });
    s = BlockSumDouble(s, dscratch);
    if (threadIdx.x == 0) lse_out[local] = m + static_cast<float>(log(s));
  }

  const uint32_t* mask = p.bitmask_offset >= 0 ? in.bitmasks + p.bitmask_offset : nullptr;
  if (p.temperature <= 0.0f && p.penalty_begin == p.penalty_end && p.ban_begin == p.ban_end) {
    // Greedy without penalties or bans (the common case): one vectorized pass over the logits.
    ArgBest best{-INFINITY, INT_MAX};
    ForEachValue(x, vocab, [&](int i, float v) {
      if (mask != nullptr && ((mask[i >> 5] >> (i & 31)) & 1u) == 0) return;
      const ArgBest c{v, i};
      if (Better(c, best)) best = c;
    });
    best = BlockBest(best, fscratch, iscratch);
    if (threadIdx.x == 0) out.token_ids[row] = best.value > -INFINITY ? best.index : -1;
    return;
  }
  ForEachValue(x, vocab, [&](int i, float v) {
    y[i] = mask != nullptr && ((mask[i >> 5] >> (i & 31)) & 1u) == 0 ? -INFINITY : v;
  });
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
    ForEachValue(y, vocab, [&](int i, float v) {
      const ArgBest c{v, i};
      if (Better(c, best)) best = c;
    });
    best = BlockBest(best, fscratch, iscratch);
    // -1: every token is banned or masked (the host turns it into InvalidArgument).
    if (threadIdx.x == 0) out.token_ids[row] = best.value > -INFINITY ? best.index : -1;
    return;
  }
  const float inv_t = 1.0f / p.temperature;
  float mt = -INFINITY;
  ForEachValue(y, vocab, [&](int, float v) { mt = fmaxf(mt, __fmul_rn(v, inv_t)); });
  mt = BlockMax(mt, fscratch);
  // exp as the reference computes it: float argument (no FMA contraction), correctly rounded.
  auto scaled_exp = [&](float v) {
    return static_cast<float>(exp(static_cast<double>(__fsub_rn(__fmul_rn(v, inv_t), mt))));
  };
  // y becomes the unnormalized exp (each thread rewrites only the elements it just read).
  double z = 0.0;
  ForEachValue(y, vocab, [&](int i, float v) {
    const float e = v > -INFINITY ? scaled_exp(v) : 0.0f;
    y[i] = e;
    z += e;
  });
  z = BlockSumDouble(z, dscratch);
  if (mt == -INFINITY) {
    if (threadIdx.x == 0) out.token_ids[row] = -1;  // every token banned or masked
    for (int i = threadIdx.x; i < vocab; i += kThreads) y[i] = 0.0f;
    return;
  }
  if (threadIdx.x == 0) out.token_ids[row] = 0;  // SelectKernel draws the real one
  ForEachValue(y, vocab, [&](int i, float e) { y[i] = static_cast<float>(e / z); });
}

// ---- Pass 2 (random rows): top-k / min-p / top-p cuts and the inverse-CDF draw over the
// descending-probability order (ties by lower id), WITHOUT sorting the vocabulary. Each cut and the
// draw is a radix select over the 32-bit patterns of the (non-negative) float probabilities, whose
// unsigned order equals their numeric order: 3 rounds of a digit histogram (count and mass per
// digit) find the probability value v* of the wanted element and the count / mass of everything
// before it; the lowest id per digit, or a last pass over ids, picks the wanted element among the
// ties of v*. Masses are integers round(p * 2^31) (resolution 4.7e-10): sums are exact and
// associative, so the shared-memory atomics are deterministic and the CPU twin
// (cpu::DrawFromProbs) gets the same token from the same probabilities.

constexpr double kMassScale = 2147483648.0;  // 2^31

// p * 2^31 is exact in float (a power-of-two scale), so this is round-to-nearest-even of it, the
// same number the CPU's llrint gives. A row's total fits 32 bits (sum p = 1 → 2^31, plus at most
// half a unit per token), so histograms use native 32-bit shared atomics.
__device__ __forceinline__ unsigned long long MassFixed(float p) {
  return __float2uint_rn(p * 2147483648.0f);
}

// An order-prefix of the row: every element e with key(e) > key, or key(e) == key and id(e) <= id.
struct Cut {
  uint32_t key;
  int id;
  __device__ __forceinline__ bool Contains(uint32_t k, int i) const {
    return k > key || (k == key && i <= id);
  }
};

// The element a select found, with the count and mass of the order-prefix ending at it.
struct Selected {
  bool found;
  uint32_t key;
  int id;
  int count;                // elements up to and including it
  unsigned long long mass;  // their fixed-point mass
};

// Digits of the 32-bit keys, most significant first: 10 + 11 + 11 bits. The first round's
// histogram is of the whole row and is built once per row (BuildTopHistogram): it serves every
// select of the row, because a cut is an order-prefix — the digits above the cut's own first digit
// are entirely inside it, so the first digit where a target inside the cut is reached is the same
// in the row's histogram as in the cut's. Only rounds 2 and 3 pass over the row again, and they
// touch only the elements of one first-round digit.
constexpr int kTopBits = 10, kTopShift = 22, kTopBins = 1 << kTopBits;
constexpr int kLowBits = 11, kLowBins = 1 << kLowBits;

struct SelectScratch {
  int tie_id;  // (kept apart from warp_count, whose reads may be vectorized)
  unsigned int top_count[kTopBins];  // first-round histogram of the whole row
  unsigned int top_mass[kTopBins];
  unsigned int count[kLowBins];  // rounds 2 and 3
  unsigned int mass[kLowBins];
  int min_id[kLowBins];  // round 3: the lowest id per digit (the element, when unique)
  int digit;  // winning digit of the round (-1: none)
  unsigned int count_before;  // of the winning digit, within the round
  unsigned long long mass_before;
  int warp_count[kWarps];
};

// Adds (count, mass) runs of equal digits into a shared histogram: a thread sums consecutive
// elements with the same digit in registers and flushes on change (flat distributions put most
// of a row into one or two digits, which would serialize the shared atomics).
struct RunAccumulator {
  unsigned int* count;
  unsigned int* mass;
  int digit = -1;
  unsigned int run_count = 0;
  unsigned int run_mass = 0;
  __device__ __forceinline__ void Add(int d, unsigned int m) {
    if (d != digit) {
      Flush();
      digit = d;
    }
    ++run_count;
    run_mass += m;
  }
  __device__ __forceinline__ void Flush() {
    if (digit >= 0 && run_count > 0) {
      atomicAdd(&count[digit], run_count);
      atomicAdd(&mass[digit], run_mass);
    }
    run_count = 0;
    run_mass = 0;
  }
};

// The first-round histogram of the whole row; returns the largest probability.
__device__ float BuildTopHistogram(const float* probs, int vocab, SelectScratch* s,
                                   float* fscratch) {
  for (int d = threadIdx.x; d < kTopBins; d += kThreads) {
    s->top_count[d] = 0;
    s->top_mass[d] = 0;
  }
  __syncthreads();
  RunAccumulator acc{s->top_count, s->top_mass};
  float pmax = 0.0f;
  ForEachValue(probs, vocab, [&](int, float p) {
    pmax = fmaxf(pmax, p);
    acc.Add(static_cast<int>(__float_as_uint(p) >> kTopShift), static_cast<unsigned int>(MassFixed(p)));
  });
  acc.Flush();
  pmax = BlockMax(pmax, fscratch);  // synchronizes
  return pmax;
}

enum class SelectBy { kPosition, kMassAtLeast, kMassAbove };

// Warp 0 scans `bins` digits from the top (descending keys) for the first whose inclusive sum,
// on top of (count_ahead, mass_ahead), reaches the target; writes s->digit (-1: none),
// s->count_before / s->mass_before (within the round). Lane l sums digits
// [bins - per (l + 1), bins - per l), a warp scan, then the first lane that reaches it walks its own.
__device__ void FindDigit(const unsigned int* count, const unsigned int* mass, int bins,
                          SelectBy by, int position, double mass_target, unsigned int count_ahead,
                          unsigned long long mass_ahead, SelectScratch* s) {
  if (threadIdx.x >= 32) return;
  auto reached = [&](unsigned int cnt, unsigned long long m) {
    switch (by) {
      case SelectBy::kPosition:
        return count_ahead + cnt > static_cast<unsigned int>(position);
      case SelectBy::kMassAtLeast:
        return static_cast<double>(mass_ahead + m) >= mass_target;
      default:
        return static_cast<double>(mass_ahead + m) > mass_target;
    }
  };
  const int lane = threadIdx.x;
  const int per = bins / 32;
  unsigned int c = 0;
  unsigned long long m = 0;
  for (int j = 0; j < per; ++j) {
    c += count[bins - 1 - per * lane - j];
    m += mass[bins - 1 - per * lane - j];
  }
  unsigned int c_incl = c;
  unsigned long long m_incl = m;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned int cn = __shfl_up_sync(0xffffffffu, c_incl, o);
    const unsigned long long mn = __shfl_up_sync(0xffffffffu, m_incl, o);
    if (lane >= o) {
      c_incl += cn;
      m_incl += mn;
    }
  }
  const unsigned int ballot = __ballot_sync(0xffffffffu, c_incl > 0 && reached(c_incl, m_incl));
  if (lane == 0) s->digit = -1;
  __syncwarp();
  if (ballot == 0u) return;
  const int first = __ffs(static_cast<int>(ballot)) - 1;
  if (lane != first) return;
  unsigned int cb = c_incl - c;
  unsigned long long mb = m_incl - m;
  for (int j = 0; j < per; ++j) {
    const int d = bins - 1 - per * lane - j;
    const unsigned int cd = count[d];
    const unsigned long long md = mass[d];
    if (cd > 0 && reached(cb + cd, mb + md)) {
      s->digit = d;
      s->count_before = cb;
      s->mass_before = mb;
      return;
    }
    cb += cd;
    mb += md;
  }
}

// The first element of the order within `cut` whose inclusive prefix reaches the target:
// kPosition: the element at 0-based position `position`; kMassAtLeast / kMassAbove: the first
// element whose inclusive prefix mass (fixed point) is >= / > `mass_target`. found == false when
// no element of the cut does (target beyond the cut's total). Needs BuildTopHistogram's histogram.
__device__ Selected RadixSelect(const float* probs, int vocab, Cut cut, SelectBy by, int position,
                                double mass_target, SelectScratch* s) {
  constexpr Selected kNone{false, 0u, 0, 0, 0ull};
  // Round 1 from the row's histogram (see above): a digit below the cut's first digit means the
  // target lies beyond the cut.
  FindDigit(s->top_count, s->top_mass, kTopBins, by, position, mass_target, 0u, 0ull, s);
  __syncthreads();
  const int top_digit = s->digit;
  uint32_t prefix = static_cast<uint32_t>(top_digit) << kTopShift;  // key bits fixed so far
  unsigned int count_ahead = s->count_before;  // cut elements with larger keys than the prefix's
  unsigned long long mass_ahead = s->mass_before;
  unsigned int final_count = 0;
  __syncthreads();  // every thread has read s before anyone writes it again
  if (top_digit < static_cast<int>(cut.key >> kTopShift)) return kNone;
#pragma unroll 1
  for (int round = 1; round <= 2; ++round) {
    const int shift = round == 1 ? kLowBits : 0;
    const bool last = round == 2;
    const uint32_t high_mask = 0xffffffffu << (shift + kLowBits);
    for (int d = threadIdx.x; d < kLowBins; d += kThreads) {
      s->count[d] = 0;
      s->mass[d] = 0;
      s->min_id[d] = INT_MAX;
    }
    __syncthreads();
    RunAccumulator acc{s->count, s->mass};
    ForEachValue(probs, vocab, [&](int i, float p) {
      const uint32_t k = __float_as_uint(p);
      if ((k & high_mask) != prefix || !cut.Contains(k, i)) return;
      const int d = static_cast<int>((k >> shift) & static_cast<uint32_t>(kLowBins - 1));
      acc.Add(d, static_cast<unsigned int>(MassFixed(p)));
      if (last) atomicMin(&s->min_id[d], i);
    });
    acc.Flush();
    __syncthreads();
    FindDigit(s->count, s->mass, kLowBins, by, position, mass_target, count_ahead, mass_ahead, s);
    __syncthreads();
    const int digit = s->digit;
    if (digit >= 0) {
      count_ahead += s->count_before;
      mass_ahead += s->mass_before;
      prefix |= static_cast<uint32_t>(digit) << shift;
      if (last) final_count = s->count[digit];
    }
    __syncthreads();
    if (digit < 0) return kNone;
  }
  // Every element of the cut with key == prefix is a tie at v*; pick the j-th (0-based) by id.
  const unsigned long long q = MassFixed(__uint_as_float(prefix));
  int j;
  if (by == SelectBy::kPosition) {
    j = position - static_cast<int>(count_ahead);
  } else {
    // Smallest j with mass_ahead + (j + 1) q reaching the target (q > 0: a zero-mass digit never
    // reaches a target the mass before it did not).
    const double need = (mass_target - static_cast<double>(mass_ahead)) / static_cast<double>(q);
    j = max(0, static_cast<int>(ceil(need)) - 1);
    auto reached_at = [&](int jj) {
      const double m = static_cast<double>(mass_ahead + static_cast<unsigned long long>(jj + 1) * q);
      return by == SelectBy::kMassAtLeast ? m >= mass_target : m > mass_target;
    };
    while (j > 0 && reached_at(j - 1)) --j;
    while (!reached_at(j)) ++j;
  }
  if (j >= static_cast<int>(final_count)) return kNone;
  if (j == 0) {  // the lowest id of the tie (the element itself when it is unique)
    const int id = s->min_id[prefix & static_cast<uint32_t>(kLowBins - 1)];
    __syncthreads();
    return Selected{true, prefix, id, static_cast<int>(count_ahead) + 1, mass_ahead + q};
  }
  if (threadIdx.x == 0) s->tie_id = -1;
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int seen = 0;  // ties before the current tile
  for (int base = 0; base < vocab; base += kThreads) {
    const int i = base + threadIdx.x;
    const uint32_t k = i < vocab ? __float_as_uint(probs[i]) : 0u;
    const bool tie = i < vocab && k == prefix && cut.Contains(k, i);
    const unsigned int ballot = __ballot_sync(0xffffffffu, tie);
    if (lane == 0) s->warp_count[warp] = __popc(ballot);
    __syncthreads();
    int before = seen;
    for (int w = 0; w < warp; ++w) before += s->warp_count[w];
    before += __popc(ballot & ((1u << lane) - 1u));
    if (tie && before == j) s->tie_id = i;
    int tile = 0;
    for (int w = 0; w < kWarps; ++w) tile += s->warp_count[w];
    seen += tile;
    __syncthreads();
    if (s->tie_id >= 0 || seen > j) break;
  }
  const int id = s->tie_id;
  __syncthreads();
  if (id < 0) return kNone;
  return Selected{true, prefix, id, static_cast<int>(count_ahead) + j + 1,
                  mass_ahead + static_cast<unsigned long long>(j + 1) * q};
}

__global__ void __launch_bounds__(kThreads) SelectKernel(SampleInputs in, SampleOutputs out,
                                                         int row0, const float* probs_all) {
  __shared__ SelectScratch s;
  __shared__ float fscratch[kWarps];
  __shared__ int iscratch[kWarps];
  __shared__ unsigned long long total_scratch[kWarps];
  const int local = blockIdx.x;
  const int row = row0 + local;
  const SampleRowParams p = in.rows[row];
  if (p.temperature <= 0.0f) return;
  if (out.token_ids[row] == -1) return;  // flagged by ProcessKernel: nothing to draw from
  const int vocab = in.vocab_size;
  const float* probs = probs_all + static_cast<int64_t>(local) * vocab;

  const float pmax = BuildTopHistogram(probs, vocab, &s, fscratch);
  Cut cut{0u, INT_MAX};  // the whole row
  int n = vocab;
  bool have_mass = false;
  unsigned long long cut_mass = 0;
  auto set_cut = [&](const Selected& sel) {
    cut = Cut{sel.key, sel.id};
    n = sel.count;
    cut_mass = sel.mass;
    have_mass = true;
  };
  if (p.top_k > 0 && p.top_k < n) {
    set_cut(RadixSelect(probs, vocab, cut, SelectBy::kPosition, p.top_k - 1, 0.0, &s));
  }
  if (p.min_p > 0.0f) {
    const float threshold = p.min_p * pmax;
    int count = 0;
    ForEachValue(probs, vocab, [&](int i, float x) {
      count += cut.Contains(__float_as_uint(x), i) && x >= threshold ? 1 : 0;
    });
    count = max(BlockSumInt(count, iscratch), 1);
    if (count < n) set_cut(RadixSelect(probs, vocab, cut, SelectBy::kPosition, count - 1, 0.0, &s));
  }
  if (p.top_p < 1.0f) {
    const Selected sel = RadixSelect(probs, vocab, cut, SelectBy::kMassAtLeast, 0,
                                     static_cast<double>(p.top_p) * kMassScale, &s);
    if (sel.found && sel.count < n) set_cut(sel);
  }
  if (!have_mass) {  // the whole row: its histogram's total
    if (threadIdx.x < 32) {
      unsigned long long m = 0;
      for (int d = threadIdx.x; d < kTopBins; d += 32) m += s.top_mass[d];
      for (int o = 16; o > 0; o >>= 1) m += __shfl_xor_sync(0xffffffffu, m, o);
      if (threadIdx.x == 0) total_scratch[0] = m;
    }
    __syncthreads();
    cut_mass = total_scratch[0];
  }
  const double target = static_cast<double>(p.uniform) * static_cast<double>(cut_mass);
  Selected chosen = RadixSelect(probs, vocab, cut, SelectBy::kMassAbove, 0, target, &s);
  if (!chosen.found) {  // rounding put the target at the very end: the cut's last element
    chosen = RadixSelect(probs, vocab, cut, SelectBy::kPosition, n - 1, 0.0, &s);
  }
  if (threadIdx.x == 0) out.token_ids[row] = chosen.id;
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
