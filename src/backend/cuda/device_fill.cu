#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/device_fill.h"
#include "kernels/pdl.cuh"
#include "model/weights.h"

namespace kiln::cuda {
namespace {

constexpr int kThreads = 256;

int Blocks(int64_t count) {
  const int64_t b = (count + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

template <typename T>
__device__ __forceinline__ void Store(T* p, float v);
template <>
__device__ __forceinline__ void Store<float>(float* p, float v) {
  *p = v;
}
template <>
__device__ __forceinline__ void Store<__nv_bfloat16>(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

template <typename T>
__global__ void FillDummyKernel(T* dst, int64_t count, uint64_t seed, bool ones) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Store(dst + i, ones ? 1.0f : DummyWeightValue(seed, i));
  }
}

template <typename T>
__global__ void ConvertKernel(const void* src, SrcType src_type, T* dst, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v;
    if (src_type == SrcType::kF32) {
      v = static_cast<const float*>(src)[i];
    } else if (src_type == SrcType::kF16) {
      v = HalfToFloat(static_cast<const uint16_t*>(src)[i]);
    } else {
      v = BFloat16ToFloat(static_cast<const uint16_t*>(src)[i]);
    }
    Store(dst + i, v);
  }
}

template <typename T, typename Out>
__global__ void GatherRowsKernel(const T* src, const int32_t* indices, int cols, Out* dst) {
  kernels::PdlLaunchDependents();
  kernels::PdlWait();
  const int r = blockIdx.x;
  const T* s = src + static_cast<int64_t>(indices[r]) * cols;
  Out* d = dst + static_cast<int64_t>(r) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    if constexpr (std::is_same_v<Out, T>) {
      d[c] = s[c];
    } else {
      d[c] = static_cast<float>(s[c]);
    }
  }
}

__global__ void RepeatScalarKernel(float* x, int64_t count) {
  const float v = x[0];
  for (int64_t i = 1 + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] = v;
  }
}

}  // namespace

cudaError_t LaunchRepeatScalar(float* x, int64_t count, cudaStream_t stream) {
  if (count <= 1) return cudaSuccess;
  RepeatScalarKernel<<<Blocks(count), kThreads, 0, stream>>>(x, count);
  return cudaGetLastError();
}

cudaError_t LaunchFillDummy(void* dst, ElemType dst_type, int64_t count, uint64_t seed, bool ones,
                            cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  if (dst_type == ElemType::kF32) {
    FillDummyKernel<<<Blocks(count), kThreads, 0, stream>>>(static_cast<float*>(dst), count, seed,
                                                            ones);
  } else {
    FillDummyKernel<<<Blocks(count), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(dst),
                                                            count, seed, ones);
  }
  return cudaGetLastError();
}

cudaError_t LaunchConvert(const void* src, SrcType src_type, void* dst, ElemType dst_type,
                          int64_t count, cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  if (dst_type == ElemType::kF32) {
    ConvertKernel<<<Blocks(count), kThreads, 0, stream>>>(src, src_type, static_cast<float*>(dst),
                                                          count);
  } else {
    ConvertKernel<<<Blocks(count), kThreads, 0, stream>>>(src, src_type,
                                                          static_cast<__nv_bfloat16*>(dst), count);
  }
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const void* src, const int32_t* indices, int num_rows, int cols,
                             ElemType t, void* dst, cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  if (t == ElemType::kF32) {
    return kernels::LaunchPdl(GatherRowsKernel<float, float>, dim3(num_rows), dim3(kThreads), 0,
                              stream, static_cast<const float*>(src), indices, cols,
                              static_cast<float*>(dst));
  }
  return kernels::LaunchPdl(GatherRowsKernel<__nv_bfloat16, __nv_bfloat16>, dim3(num_rows),
                            dim3(kThreads), 0, stream, static_cast<const __nv_bfloat16*>(src),
                            indices, cols, static_cast<__nv_bfloat16*>(dst));
}

cudaError_t LaunchGatherRowsToFloat(const void* src, const int32_t* indices, int num_rows, int cols,
                                    ElemType t, float* dst, cudaStream_t stream) {
  if (num_rows <= 0) return cudaSuccess;
  if (t == ElemType::kF32) {
    return kernels::LaunchPdl(GatherRowsKernel<float, float>, dim3(num_rows), dim3(kThreads), 0,
                              stream, static_cast<const float*>(src), indices, cols, dst);
  }
  return kernels::LaunchPdl(GatherRowsKernel<__nv_bfloat16, float>, dim3(num_rows), dim3(kThreads),
                            0, stream, static_cast<const __nv_bfloat16*>(src), indices, cols, dst);
}

}  // namespace kiln::cuda
