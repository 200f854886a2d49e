#include "kernels/activation.cuh"

namespace kiln::kernels {

template <typename T>
cudaError_t SiluMul(const SiluMulParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.intermediate_size <= 0) return cudaErrorInvalidValue;
  const bool vectorized = p.intermediate_size % kVecElems<T> == 0 &&
                          reinterpret_cast<uintptr_t>(p.gate_up) % 16 == 0 &&
                          reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
  const int64_t work = static_cast<int64_t>(p.num_tokens) * p.intermediate_size /
                       (vectorized ? kVecElems<T> : 1);
  const int threads = 256;
  const int64_t blocks64 = (work + threads - 1) / threads;
  const int blocks = static_cast<int>(blocks64 < 65535 * 16 ? blocks64 : 65535 * 16);
  if (vectorized) {
    return LaunchPdl(SiluMulKernel<T, true>, dim3(blocks), dim3(threads), 0, stream, p);
  }
  return LaunchPdl(SiluMulKernel<T, false>, dim3(blocks), dim3(threads), 0, stream, p);
}

template cudaError_t SiluMul<float>(const SiluMulParams<float>&, cudaStream_t);
template cudaError_t SiluMul<__nv_bfloat16>(const SiluMulParams<__nv_bfloat16>&, cudaStream_t);

}  // namespace kiln::kernels
