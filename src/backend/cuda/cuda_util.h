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

// How CudaBuffer allocates: device memory, or page-locked host memory (for async copies).
struct DeviceMemory {
  static cudaError_t Allocate(void** ptr, size_t size_bytes) { return cudaMalloc(ptr, size_bytes); }
  static void Free(void* ptr) { cudaFree(ptr); }
};
struct PinnedMemory {
  static cudaError_t Allocate(void** ptr, size_t size_bytes) {
    return cudaMallocHost(ptr, size_bytes);
  }
  static void Free(void* ptr) { cudaFreeHost(ptr); }
};

// Memory owned by one object (movable, not copyable); size 0 → nullptr.
template <typename Memory>
class CudaBuffer final {
 public:
  CudaBuffer() = default;
  ~CudaBuffer() { Reset(); }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  CudaBuffer(CudaBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), size_bytes_(std::exchange(other.size_bytes_, 0)) {}
  CudaBuffer& operator=(CudaBuffer&& other) noexcept {
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
    KILN_CUDA_RETURN_IF_ERROR(Memory::Allocate(&ptr_, size_bytes));
    size_bytes_ = size_bytes;
    return Status::Ok();
  }
  void Reset() {
    if (ptr_ != nullptr) Memory::Free(ptr_);
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

using DeviceBuffer = CudaBuffer<DeviceMemory>;
using PinnedBuffer = CudaBuffer<PinnedMemory>;

}  // namespace kiln::cuda
