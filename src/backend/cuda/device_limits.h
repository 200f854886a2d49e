// Measured physical limits of the current CUDA device, for benchmarks that print each figure
// beside its limit: device-to-device copy bandwidth (bytes read + written per second) and the
// dense bf16 GEMM rate through cuBLASLt (FLOP/s, on random, non-zero data).
//
// Both synchronize the device and take a few hundred milliseconds; not for hot paths.
#pragma once

#include <string>

#include "kiln/status.h"

namespace kiln::cuda {

struct DeviceLimits {
  std::string device_name;
  double copy_bytes_per_s = 0;  // (read + written) bytes / s of a 1 GiB cudaMemcpy D2D, median
  double bf16_gemm_flops = 0;   // 2 m n k / s of an m = n = k = gemm_size bf16 product, median
  int gemm_size = 0;
  double total_memory_bytes = 0;
};

StatusOr<DeviceLimits> MeasureDeviceLimits(int device_id, int gemm_size = 8192);

}  // namespace kiln::cuda
