#include "kernels/rope.cuh"

namespace kiln::kernels {

template <typename T>
cudaError_t RopeKvCache(const RopeKvCacheParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 ||
      p.head_dim > 64 * kRopeMaxPairsPerLane || p.num_heads <= 0 || p.num_kv_heads <= 0) {
    return cudaErrorInvalidValue;
  }
  const int heads = p.num_heads + 2 * p.num_kv_heads;
  const int warps = heads < 8 ? heads : 8;
  return LaunchPdl(RopeKvCacheKernel<T>, dim3(p.num_tokens), dim3(warps * 32), 0, stream, p);
}

template cudaError_t RopeKvCache<float>(const RopeKvCacheParams<float>&, cudaStream_t);
template cudaError_t RopeKvCache<__nv_bfloat16>(const RopeKvCacheParams<__nv_bfloat16>&,
                                                cudaStream_t);

}  // namespace kiln::kernels
