// Device-side helpers of the CUDA backend that are not model ops: materializing weights (dummy
// values generated on the GPU with DummyWeightValue, or raw F32/F16/BF16 bytes converted to the
// compute dtype), gathering rows, and converting rows to float32. Launchers take raw pointers and
// a stream, return cudaError_t, and are includable from host C++.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::cuda {

enum class ElemType : uint8_t { kF32, kBF16 };  // the backend's compute/storage dtype
enum class SrcType : uint8_t { kF32, kF16, kBF16 };  // a host tensor's dtype

inline size_t ElemSize(ElemType t) { return t == ElemType::kF32 ? 4 : 2; }

// dst[i] = DummyWeightValue(seed, i) (or 1.0 when ones), i in [0, count), rounded to dst_type.
cudaError_t LaunchFillDummy(void* dst, ElemType dst_type, int64_t count, uint64_t seed, bool ones,
                            cudaStream_t stream);
// x[i] = x[0] for i in [1, count).
cudaError_t LaunchRepeatScalar(float* x, int64_t count, cudaStream_t stream);
// dst[i] = convert(src[i]) for i in [0, count).
cudaError_t LaunchConvert(const void* src, SrcType src_type, void* dst, ElemType dst_type,
                          int64_t count, cudaStream_t stream);
// dst[r, :] = src[indices[r], :] for r in [0, num_rows); row width `cols` elements of type t.
cudaError_t LaunchGatherRows(const void* src, const int32_t* indices, int num_rows, int cols,
                             ElemType t, void* dst, cudaStream_t stream);
// dst (float32)[r, :] = src[indices[r], :].
cudaError_t LaunchGatherRowsToFloat(const void* src, const int32_t* indices, int num_rows, int cols,
                                    ElemType t, float* dst, cudaStream_t stream);

}  // namespace kiln::cuda
