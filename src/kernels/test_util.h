// Helpers for the kernels' parity tests and benchmarks (host code): GPU presence, an RAII device
// buffer, bf16 ⇄ float on the host, random fills, and a per-element tolerance check that reports
// the worst element. Not part of kiln_kernels' API.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kiln::kernels::testing {

// Empty when a CUDA device is usable; otherwise the reason (for GTEST_SKIP).
inline std::string GpuMissingReason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(err);
  if (count == 0) return "no CUDA device present";
  return "";
}

// Fixture base: skips (with the reason) when no GPU is present; a seeded generator per test.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = GpuMissingReason();
    if (!reason.empty()) GTEST_SKIP() << reason;
  }
  std::mt19937 rng_{1234};
};

#define KILN_CUDA_OK(expr)                                                              \
  do {                                                                                  \
    const cudaError_t _kiln_err = (expr);                                               \
    ASSERT_EQ(_kiln_err, cudaSuccess) << #expr << ": " << cudaGetErrorString(_kiln_err); \
  } while (0)

// Owns device memory for n elements of T.
template <typename T>
class DeviceBuffer final {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : size_(n) {
    if (n > 0 && cudaMalloc(&ptr_, n * sizeof(T)) != cudaSuccess) {
      ptr_ = nullptr;
      size_ = 0;
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (ptr_ != nullptr) cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_), size_(other.size_) {
    other.ptr_ = nullptr;
    other.size_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(size_, other.size_);
    return *this;
  }

  T* get() const { return ptr_; }
  size_t size() const { return size_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(size_);
    if (size_ > 0) cudaMemcpy(host.data(), ptr_, size_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  // Fills every byte with 0xFF (NaN for float and bf16): unwritten outputs show up as NaN.
  void Poison() {
    if (size_ > 0) cudaMemset(ptr_, 0xFF, size_ * sizeof(T));
  }

 private:
  T* ptr_ = nullptr;
  size_t size_ = 0;
};

inline float ToHostFloat(float v) { return v; }
inline float ToHostFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
T FromHostFloat(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else {
    return __float2bfloat16_rn(v);
  }
}

// Random values in [-scale, scale], stored as T; `rounded` receives them back as floats (the
// exact values the kernel sees).
template <typename T>
std::vector<T> RandomValues(size_t n, float scale, std::mt19937& rng, std::vector<float>* rounded) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<T> out(n);
  rounded->resize(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = FromHostFloat<T>(dist(rng));
    (*rounded)[i] = ToHostFloat(out[i]);
  }
  return out;
}

template <typename T>
std::vector<float> ToFloats(const std::vector<T>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = ToHostFloat(v[i]);
  return out;
}

// Per-element check |got - want| <= atol + rtol * |want| (NaN fails). Returns "" when all pass,
// else a description of the count and the worst element.
inline std::string CompareClose(const std::vector<float>& got, const std::vector<double>& want,
                                double atol, double rtol) {
  if (got.size() != want.size()) return "size mismatch";
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double excess = std::isnan(got[i]) ? 1e30 : err - (atol + rtol * std::fabs(want[i]));
    if (excess > 0) ++bad;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (bad == 0) return "";
  return std::to_string(bad) + " of " + std::to_string(got.size()) + " elements off; worst [" +
         std::to_string(worst) + "] got " + std::to_string(got[worst]) + " want " +
         std::to_string(want[worst]);
}

// Tolerances for an output of type T: bf16 rounding is 2^-9 relative; allow a few ulps.
template <typename T>
constexpr double kRtol = std::is_same_v<T, float> ? 3e-5 : 1.0 / 64;

}  // namespace kiln::kernels::testing
