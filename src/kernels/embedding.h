// Embedding gather: out[t, :] = table[token_ids[t], :] (CPU twin: cpu::EmbeddingGather).
//
// Launchers are asynchronous on `stream` and return the launch's cudaError_t. Element type T is
// float or __nv_bfloat16. Ids outside [0, vocab_size) produce a zero row (the runner validates ids
// on the host before they get here; the kernel never reads out of bounds).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::kernels {

template <typename T>
struct EmbeddingGatherParams {
  const int32_t* token_ids = nullptr;  // [num_tokens]
  const T* table = nullptr;            // [vocab_size, hidden_size]
  T* out = nullptr;                    // [num_tokens, hidden_size]
  int num_tokens = 0;
  int vocab_size = 0;
  int hidden_size = 0;
};

template <typename T>
cudaError_t EmbeddingGather(const EmbeddingGatherParams<T>& params, cudaStream_t stream);

}  // namespace kiln::kernels
