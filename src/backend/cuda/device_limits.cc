#include "backend/cuda/device_limits.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_util.h"
#include "backend/cuda/device_fill.h"
#include "backend/cuda/gemm.h"

namespace kiln::cuda {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median seconds of `reps` timed runs of fn (after 3 warm-ups), timed with events on stream.
template <typename Fn>
StatusOr<double> TimeMedian(cudaStream_t stream, int reps, Fn fn) {
  cudaEvent_t start, stop;
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) KILN_RETURN_IF_ERROR(fn());
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    KILN_RETURN_IF_ERROR(fn());
    KILN_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    KILN_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    KILN_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return Median(times);
}

}  // namespace

StatusOr<DeviceLimits> MeasureDeviceLimits(int device_id, int gemm_size) {
  DeviceLimits limits;
  KILN_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_id));
  cudaDeviceProp prop{};
  KILN_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device_id));
  limits.device_name = prop.name;
  limits.total_memory_bytes = static_cast<double>(prop.totalGlobalMem);
  cudaStream_t stream;
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));

  {  // Copy bandwidth: 1 GiB device-to-device, bytes read + written.
    const size_t bytes = size_t{1} << 30;
    DeviceBuffer a, b;
    KILN_RETURN_IF_ERROR(a.Allocate(bytes));
    KILN_RETURN_IF_ERROR(b.Allocate(bytes));
    KILN_CUDA_RETURN_IF_ERROR(
        LaunchFillDummy(a.get(), ElemType::kF32, bytes / 4, 7, false, stream));
    KILN_ASSIGN_OR_RETURN(double s, TimeMedian(stream, 10, [&]() -> Status {
      KILN_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream));
      return Status::Ok();
    }));
    limits.copy_bytes_per_s = 2.0 * bytes / s;
  }
  {  // bf16 GEMM on random data.
    const int64_t n = gemm_size;
    DeviceBuffer x, w, y;
    KILN_RETURN_IF_ERROR(x.Allocate(n * n * 2));
    KILN_RETURN_IF_ERROR(w.Allocate(n * n * 2));
    KILN_RETURN_IF_ERROR(y.Allocate(n * n * 2));
    KILN_CUDA_RETURN_IF_ERROR(LaunchFillDummy(x.get(), ElemType::kBF16, n * n, 1, false, stream));
    KILN_CUDA_RETURN_IF_ERROR(LaunchFillDummy(w.get(), ElemType::kBF16, n * n, 2, false, stream));
    Gemm gemm;
    KILN_RETURN_IF_ERROR(gemm.Init());
    KILN_ASSIGN_OR_RETURN(double s, TimeMedian(stream, 10, [&]() -> Status {
      return gemm.Run(CUDA_R_16BF, CUDA_R_16BF, x.get(), w.get(), nullptr, y.get(), n, n, n,
                      stream);
    }));
    limits.bf16_gemm_flops = 2.0 * n * n * n / s;
    limits.gemm_size = gemm_size;
  }
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  cudaStreamDestroy(stream);
  return limits;
}

}  // namespace kiln::cuda
