// Embedding gather kernel: one block per token row, 16-byte vectors when the row allows it.
#pragma once

#include "kernels/common.cuh"
#include "kernels/embedding.h"
#include "kernels/pdl.cuh"

namespace kiln::kernels {

template <typename T, bool kVectorized>
__global__ void EmbeddingGatherKernel(EmbeddingGatherParams<T> p) {
  PdlLaunchDependents();
  PdlWait();
  const int t = blockIdx.x;
  const int32_t id = p.token_ids[t];
  const bool valid = id >= 0 && id < p.vocab_size;
  const T* src = p.table + static_cast<int64_t>(valid ? id : 0) * p.hidden_size;
  T* dst = p.out + static_cast<int64_t>(t) * p.hidden_size;
  if constexpr (kVectorized) {
    const int num_vecs = p.hidden_size / kVecElems<T>;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    for (int i = threadIdx.x; i < num_vecs; i += blockDim.x) {
      reinterpret_cast<uint4*>(dst)[i] = valid ? reinterpret_cast<const uint4*>(src)[i] : zero;
    }
  } else {
    for (int i = threadIdx.x; i < p.hidden_size; i += blockDim.x) {
      dst[i] = valid ? src[i] : FromFloat<T>(0.0f);
    }
  }
}

}  // namespace kiln::kernels
