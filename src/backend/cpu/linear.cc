#include "backend/cpu/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln::cpu {
namespace {

#if defined(__x86_64__)
#define KILN_AVX2 __attribute__((target("avx2,fma")))

KILN_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[t * ldy + r] for R weight rows × T input rows. Each (r, t) pair has its own accumulator, so
// the arithmetic of an element does not depend on R or T.
template <int R, int T>
KILN_AVX2 inline void Block(const float* x, const float* w, int in, int64_t ldy, float* y) {
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const int k8 = in & ~7;
  for (int k = 0; k < k8; k += 8) {
    __m256 wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wv[r] = _mm256_loadu_ps(w + static_cast<int64_t>(r) * in + k);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + static_cast<int64_t>(t) * in + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      float s = HorizontalSum(acc[r][t]);
      for (int k = k8; k < in; ++k)
        s = std::fma(w[static_cast<int64_t>(r) * in + k], x[static_cast<int64_t>(t) * in + k], s);
      y[static_cast<int64_t>(t) * ldy + r] = s;
    }
  }
}

// Columns [j0, j1) of y.
KILN_AVX2 void Columns(const float* x, int n, int in, const float* w, int out, float* y, int j0,
                       int j1) {
  int j = j0;
  for (; j + 4 <= j1; j += 4) {
    const float* wj = w + static_cast<int64_t>(j) * in;
    int t = 0;
    for (; t + 3 <= n; t += 3)
      Block<4, 3>(x + static_cast<int64_t>(t) * in, wj, in, out,
                  y + static_cast<int64_t>(t) * out + j);
    for (; t < n; ++t)
      Block<4, 1>(x + static_cast<int64_t>(t) * in, wj, in, out,
                  y + static_cast<int64_t>(t) * out + j);
  }
  for (; j < j1; ++j)
    for (int t = 0; t < n; ++t)
      Block<1, 1>(x + static_cast<int64_t>(t) * in, w + static_cast<int64_t>(j) * in, in, out,
                  y + static_cast<int64_t>(t) * out + j);
}
#endif

}  // namespace

bool LinearRowsIsBatchIndependent() {
#if defined(__x86_64__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

void LinearRows(const float* x, int n, int in, const float* w, int out, float* y, int num_threads) {
  if (n <= 0 || out <= 0) return;
  if (!LinearRowsIsBatchIndependent()) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y,
                out);
    return;
  }
#if defined(__x86_64__)
  // Thread start-up costs tens of microseconds: only split work that is large enough.
  const int64_t work = static_cast<int64_t>(n) * out * std::max(in, 1);
  const int64_t kMinWorkPerThread = int64_t{1} << 20;
  const int threads = static_cast<int>(std::min<int64_t>(
      {std::max(num_threads, 1), std::max<int64_t>(work / kMinWorkPerThread, 1), (out + 3) / 4}));
  if (threads <= 1) {
    Columns(x, n, in, w, out, y, 0, out);
    return;
  }
  // Split points on multiples of 4 columns (the blocking does not change results; this only keeps
  // the 4-wide blocks whole).
  auto split = [&](int i) {
    return i == threads ? out : static_cast<int>((int64_t{out} / 4 * i / threads) * 4);
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) {
    try {
      pool.emplace_back(Columns, x, n, in, w, out, y, split(i), split(i + 1));
    } catch (const std::system_error&) {
      Columns(x, n, in, w, out, y, split(i), split(i + 1));  // no thread (EAGAIN): do it here
    }
  }
  Columns(x, n, in, w, out, y, 0, split(1));
  for (std::thread& th : pool) th.join();
#endif
}

}  // namespace kiln::cpu
