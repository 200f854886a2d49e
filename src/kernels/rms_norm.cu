#include "kernels/rms_norm.cuh"

namespace kiln::kernels {
namespace {

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

template <typename T>
cudaError_t RmsNorm(const RmsNormParams<T>& p, cudaStream_t stream) {
  if (p.num_tokens == 0) return cudaSuccess;
  if (p.num_tokens < 0 || p.hidden_size <= 0) return cudaErrorInvalidValue;
  constexpr int kVe = kVecElems<T>;
  const int num_vecs = p.hidden_size / kVe;
  const bool vectorized = p.hidden_size % kVe == 0 && Aligned16(p.x) && Aligned16(p.out) &&
                          Aligned16(p.weight) && (p.residual == nullptr || Aligned16(p.residual)) &&
                          num_vecs <= kRmsNormMaxVecs * 1024;
  if (vectorized) {
    return LaunchPdl(RmsNormVecKernel<T, kRmsNormMaxVecs>, dim3(p.num_tokens),
                     dim3(RmsNormVecThreads(num_vecs)), 0, stream, p);
  }
  return LaunchPdl(RmsNormScalarKernel<T>, dim3(p.num_tokens), dim3(256), 0, stream, p);
}

template cudaError_t RmsNorm<float>(const RmsNormParams<float>&, cudaStream_t);
template cudaError_t RmsNorm<__nv_bfloat16>(const RmsNormParams<__nv_bfloat16>&, cudaStream_t);

}  // namespace kiln::kernels
