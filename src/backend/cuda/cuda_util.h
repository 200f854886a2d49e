// Small CUDA runtime helpers for the CUDA backend: cudaError_t / cublasStatus_t → Status macros,
// DeviceBuffer (an RAII cudaMalloc) and PinnedBuffer (an RAII cudaMallocHost).
//
// Not thread-safe objects; each is owned by one backend. Moving transfers ownership; copying is
// deleted.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "kiln/status.h"

namespace kiln::cuda {

inline Status CudaStatus(cudaError_t err, const char* what, const char* file, int line) {
  if (err == cudaSuccess) return Status::Ok();
  const StatusCode code =
      err == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kInternal;
  return Status(code, std::string(what) + ": " + cudaGetErrorString(err) + " (" + file + ":" +
                          std::to_string(line) + ")");
}

}  // namespace kiln::cuda

// Returns a Status from the enclosing function when the CUDA call fails.
#define KILN_CUDA_RETURN_IF_ERROR(expr) \
  KILN_RETURN_IF_ERROR(::kiln::cuda::CudaStatus((expr), #expr, __FILE__, __LINE__))
// After a kernel launch: checks the launch error.
#define KILN_CUDA_RETURN_IF_LAUNCH_ERROR(what) \
  KILN_RETURN_IF_ERROR(::kiln::cuda::CudaStatus(cudaGetLastError(), what, __FILE__, __LINE__))

namespace kiln::cuda {

// Device memory owned by one object; size 0 → nullptr.
class DeviceBuffer final {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), size_bytes_(std::exchange(other.size_bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
      size_bytes_ = std::exchange(other.size_bytes_, 0);
    }
    return *this;
  }

  Status Allocate(size_t size_bytes) {
    Reset();
    if (size_bytes == 0) return Status::Ok();
    KILN_CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, size_bytes));
    size_bytes_ = size_bytes;
    return Status::Ok();
  }
  void Reset() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    size_bytes_ = 0;
  }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size_bytes() const { return size_bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t size_bytes_ = 0;
};

// Page-locked host memory (for async copies).
class PinnedBuffer final {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { Reset(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  Status Allocate(size_t size_bytes) {
    Reset();
    if (size_bytes == 0) return Status::Ok();
    KILN_CUDA_RETURN_IF_ERROR(cudaMallocHost(&ptr_, size_bytes));
    size_bytes_ = size_bytes;
    return Status::Ok();
  }
  void Reset() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    size_bytes_ = 0;
  }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size_bytes() const { return size_bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t size_bytes_ = 0;
};

}  // namespace kiln::cuda
