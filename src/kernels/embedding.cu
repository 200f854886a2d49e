#include "kernels/embedding.cuh"

namespace kiln::kernels {

template <typename T>
cudaError_t EmbeddingGather(const EmbeddingGatherParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.hidden_size <= 0 || p.vocab_size <= 0) return cudaErrorInvalidValue;
  const bool vectorized = (p.hidden_size * sizeof(T)) % 16 == 0 &&
                          reinterpret_cast<uintptr_t>(p.table) % 16 == 0 &&
                          reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
  const int threads = 256;
  if (vectorized) {
    return LaunchPdl(EmbeddingGatherKernel<T, true>, dim3(p.num_tokens), dim3(threads), 0, stream,
                     p);
  }
  return LaunchPdl(EmbeddingGatherKernel<T, false>, dim3(p.num_tokens), dim3(threads), 0, stream,
                   p);
}

template cudaError_t EmbeddingGather<float>(const EmbeddingGatherParams<float>&, cudaStream_t);
template cudaError_t EmbeddingGather<__nv_bfloat16>(const EmbeddingGatherParams<__nv_bfloat16>&,
                                                    cudaStream_t);

}  // namespace kiln::kernels
