#include <cuda_fp16.h>

#include "kernels/fp8.cuh"
#include "kernels/pdl.cuh"

namespace kiln::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ float Load(const void* x, int64_t i) {
  return ToFloat(static_cast<const T*>(x)[i]);
}

// Block max of |v| (every thread gets it).
__device__ __forceinline__ float BlockMax(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float m = 0.0f;
  for (int i = 0; i < static_cast<int>(blockDim.x) / 32; ++i) m = fmaxf(m, partial[i]);
  return m;
}

// One block per row: amax, scale, quantize (per-row mode); or quantize with the tensor's amax.
template <typename T>
__global__ void __launch_bounds__(kThreads) QuantizeRowsKernel(QuantizeFp8Params p) {
  PdlWait();
  const int64_t row = blockIdx.x;
  const int64_t ldx = p.ldx > 0 ? p.ldx : p.cols;
  const int64_t base = row * ldx;
  float scale;
  if (p.per_tensor) {
    scale = Fp8Scale(*p.amax_workspace);
    if (row == 0 && threadIdx.x == 0) p.scales[0] = scale;
  } else {
    float amax = 0.0f;
    for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) {
      amax = fmaxf(amax, fabsf(Load<T>(p.x, base + i)));
    }
    amax = BlockMax(amax);
    scale = Fp8Scale(amax);
    if (threadIdx.x == 0) p.scales[row] = scale;
  }
  for (int64_t i = threadIdx.x; i < p.cols; i += blockDim.x) {
    p.out[row * p.cols + i] = FloatToFp8(__fdiv_rn(Load<T>(p.x, base + i), scale));
  }
  PdlLaunchDependents();
}

// amax over the whole matrix into *amax (positive floats compare as their bits).
template <typename T>
__global__ void __launch_bounds__(kThreads) AmaxKernel(QuantizeFp8Params p) {
  const int64_t ldx = p.ldx > 0 ? p.ldx : p.cols;
  float amax = 0.0f;
  const int64_t total = p.rows * p.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    amax = fmaxf(amax, fabsf(Load<T>(p.x, (i / p.cols) * ldx + i % p.cols)));
  }
  amax = BlockMax(amax);
  if (threadIdx.x == 0) {
    atomicMax(reinterpret_cast<unsigned int*>(p.amax_workspace), __float_as_uint(amax));
  }
}

__global__ void DequantizeKernel(const uint8_t* q, const float* scales, int64_t rows, int64_t cols,
                                 float* out) {
  const int64_t total = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(q[i]), __NV_E4M3);
    out[i] = __half2float(*reinterpret_cast<const __half*>(&h)) * scales[i / cols];
  }
}

}  // namespace

cudaError_t QuantizeFp8(const QuantizeFp8Params& p, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0 || p.cols % 8 != 0) return cudaErrorInvalidValue;
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.per_tensor) {
    if (p.amax_workspace == nullptr) return cudaErrorInvalidValue;
    cudaError_t err = cudaMemsetAsync(p.amax_workspace, 0, sizeof(float), stream);
    if (err != cudaSuccess) return err;
    const int64_t blocks = std::min<int64_t>((p.rows * p.cols + kThreads - 1) / kThreads, 4096);
    if (p.x_is_f32) {
      AmaxKernel<float><<<static_cast<int>(blocks), kThreads, 0, stream>>>(p);
    } else {
      AmaxKernel<__nv_bfloat16><<<static_cast<int>(blocks), kThreads, 0, stream>>>(p);
    }
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (p.rows > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.rows));
  if (p.x_is_f32) return LaunchPdl(QuantizeRowsKernel<float>, grid, dim3(kThreads), 0, stream, p);
  return LaunchPdl(QuantizeRowsKernel<__nv_bfloat16>, grid, dim3(kThreads), 0, stream, p);
}

cudaError_t DequantizeFp8(const uint8_t* q, const float* scales, int64_t rows, int64_t cols,
                          float* out, cudaStream_t stream) {
  if (rows < 0 || cols <= 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((rows * cols + 255) / 256, 4096);
  DequantizeKernel<<<static_cast<int>(blocks), 256, 0, stream>>>(q, scales, rows, cols, out);
  return cudaGetLastError();
}

}  // namespace kiln::kernels
