#include "kernels/gemv.cuh"

namespace kiln::kernels {
namespace {

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// kWarpRows: rows of w per warp. At 3+ activation rows two weight rows share each x load (halves
// the L1 traffic); the loads in flight per lane stay at 8 × 16 bytes.
template <int kRows, typename OutT>
cudaError_t LaunchVec(const GemvParams<OutT>& p, cudaStream_t stream) {
  constexpr int kWarpRows = kRows <= 2 ? 1 : 2;
  constexpr int kUnroll = 8 / kWarpRows;
  const int64_t warps = (p.out_features + kWarpRows - 1) / kWarpRows;
  const int64_t blocks = (warps + kGemvWarps - 1) / kGemvWarps;
  return LaunchPdl(GemvVecKernel<kRows, kWarpRows, kUnroll, OutT>,
                   dim3(static_cast<unsigned>(blocks)), dim3(kGemvWarps * 32), 0, stream, p);
}

}  // namespace

template <typename OutT>
cudaError_t Gemv(const GemvParams<OutT>& params, cudaStream_t stream) {
  GemvParams<OutT> p = params;
  if (p.ldx == 0) p.ldx = p.in_features;
  if (p.ldy == 0) p.ldy = p.out_features;
  if (p.rows < 0 || p.rows > kGemvMaxRows || p.out_features < 0 || p.in_features < 0 ||
      p.ldx < p.in_features || p.ldy < p.out_features) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0 || p.out_features == 0) return cudaSuccess;
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr) return cudaErrorInvalidValue;
  if ((p.out_features + kGemvWarps - 1) / kGemvWarps > 0x7fffffff) return cudaErrorInvalidValue;
  const bool vectorized =
      p.in_features % 8 == 0 && p.ldx % 8 == 0 && Aligned16(p.x) && Aligned16(p.w);
  if (!vectorized) {
    const int64_t blocks = (p.out_features + kGemvWarps - 1) / kGemvWarps;
    return LaunchPdl(GemvScalarKernel<OutT>, dim3(static_cast<unsigned>(blocks)),
                     dim3(kGemvWarps * 32), 0, stream, p);
  }
  switch (p.rows) {
    case 1: return LaunchVec<1>(p, stream);
    case 2: return LaunchVec<2>(p, stream);
    case 3: return LaunchVec<3>(p, stream);
    case 4: return LaunchVec<4>(p, stream);
    case 5: return LaunchVec<5>(p, stream);
    case 6: return LaunchVec<6>(p, stream);
    case 7: return LaunchVec<7>(p, stream);
    default: return LaunchVec<8>(p, stream);
  }
}

template cudaError_t Gemv<float>(const GemvParams<float>&, cudaStream_t);
template cudaError_t Gemv<__nv_bfloat16>(const GemvParams<__nv_bfloat16>&, cudaStream_t);

}  // namespace kiln::kernels
