#include "backend/cuda/deferred_tokens.h"

namespace kiln::cuda {
namespace {

__global__ void FillDeferredTokensKernel(int32_t* token_ids, const int32_t* entries,
                                         int num_entries, const int32_t* sampled_ids,
                                         int vocab_size) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= num_entries) return;
  const int32_t id = sampled_ids[entries[2 * i + 1]];
  token_ids[entries[2 * i]] = id >= 0 && id < vocab_size ? id : 0;
}

}  // namespace

cudaError_t LaunchFillDeferredTokens(int32_t* token_ids, const int32_t* entries, int num_entries,
                                     const int32_t* sampled_ids, int vocab_size,
                                     cudaStream_t stream) {
  if (num_entries <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  FillDeferredTokensKernel<<<(num_entries + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
      token_ids, entries, num_entries, sampled_ids, vocab_size);
  return cudaGetLastError();
}

}  // namespace kiln::cuda
