// SkinnyGemm launcher (see skinny_gemm.h): argument checks, tile variant and token-tile dispatch,
// the split-K plan.
//
// Tile variants (SkinnyGemmParams::variant): (8-feature tiles per warp, 16-byte vectors per row
// and lane per iteration, iterations of weights in flight) = 0: (2, 2, 1) default; 1: (4, 2, 1);
// 2: (2, 4, 1); 3: (4, 1, 1).
#include <algorithm>
#include <type_traits>

#include "kernels/skinny_gemm.cuh"

namespace kiln::kernels {
namespace {

// Split K until the grid has about this many blocks per SM (resident: 3–4 fit per SM; 4 measured
// best at 2..64 rows on H100 against 2, gemv_bench).
constexpr int kTargetBlocksPerSm = 4;
// A split keeps at least this many main-loop iterations.
constexpr int kMinItersPerSplit = 4;

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

int NumSms() {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    return 1;
  }
  return std::max(sms, 1);
}

// 16-token tiles (mma rows) for n tokens.
int TokenTiles(int n) { return n <= 16 ? 1 : n <= 32 ? 2 : 4; }

struct Plan {
  int tiles = 0;
  int iters = 0;
  int splits = 1;
  size_t workspace_bytes = 0;  // 0 without split
};

// Depends on (m, k, tile shape, SM count) only, except the workspace size (n's token tiles).
Plan MakePlan(int n, int64_t m, int64_t k, int tile_m, int iter_k,
              int blocks_per_sm = kTargetBlocksPerSm) {
  Plan plan;
  const int64_t tiles = (m + tile_m - 1) / tile_m;
  plan.tiles = static_cast<int>(std::min<int64_t>(tiles, 0x7fffffff));
  plan.iters = static_cast<int>((k + iter_k - 1) / iter_k);
  const int64_t target = static_cast<int64_t>(blocks_per_sm) * NumSms();
  if (tiles < target && tiles <= kSkinnyCounterSlots) {
    plan.splits = static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(target / tiles, plan.iters / kMinItersPerSplit)));
  }
  if (plan.splits > 1) {
    plan.workspace_bytes = kSkinnyCounterBytes + static_cast<size_t>(plan.splits) * plan.tiles *
                                                     tile_m * 16 * TokenTiles(n) * sizeof(float);
  }
  return plan;
}

template <int kFTiles, int kVecs, int kDepth, int kTTiles, typename OutT>
cudaError_t LaunchKernel(const SkinnyGemmParams<OutT>& p, const Plan& plan, cudaStream_t stream) {
  const auto kernel = SkinnyGemmKernel<kFTiles, kVecs, kDepth, kTTiles, OutT>;
  constexpr size_t kSmem = SkinnyConfig<kFTiles, kVecs>::SmemBytes(kTTiles);
  if constexpr (kSmem > 48 * 1024) {
    static const cudaError_t attr_err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem));
    if (attr_err != cudaSuccess) return attr_err;
  }
  return LaunchPdl(kernel,
                   dim3(static_cast<unsigned>(plan.tiles), static_cast<unsigned>(plan.splits)),
                   dim3(kSkinnyWarps * 32), kSmem, stream, p, plan.splits, plan.iters);
}

template <int kFTiles, int kVecs, int kDepth, typename OutT>
cudaError_t LaunchTiles(const SkinnyGemmParams<OutT>& p, cudaStream_t stream) {
  using Cfg = SkinnyConfig<kFTiles, kVecs>;
  const Plan plan =
      MakePlan(p.n, p.m, p.k, Cfg::kTileM, Cfg::kIterK,
               p.split_blocks_per_sm > 0 ? p.split_blocks_per_sm : kTargetBlocksPerSm);
  if (plan.splits > 1 && (p.workspace == nullptr || p.workspace_bytes < plan.workspace_bytes ||
                          reinterpret_cast<uintptr_t>(p.workspace) % 256 != 0)) {
    return cudaErrorInvalidValue;
  }
  switch (TokenTiles(p.n)) {
    case 1:
      return LaunchKernel<kFTiles, kVecs, kDepth, 1>(p, plan, stream);
    case 2:
      return LaunchKernel<kFTiles, kVecs, kDepth, 2>(p, plan, stream);
    default:
      return LaunchKernel<kFTiles, kVecs, kDepth, 4>(p, plan, stream);
  }
}

}  // namespace

size_t SkinnyGemmWorkspaceBytes(int n, int64_t m, int64_t k) {
  if (n < 1 || m < 1 || k < 1) return 0;
  using Cfg = SkinnyConfig<2, 2>;
  return MakePlan(n, m, k, Cfg::kTileM, Cfg::kIterK).workspace_bytes;
}

size_t SkinnyGemmMaxWorkspaceBytes() {
  // A split grid has at most target blocks of the default tile (64 features).
  const size_t target = static_cast<size_t>(kTargetBlocksPerSm) * NumSms();
  return kSkinnyCounterBytes +
         target * SkinnyConfig<2, 2>::kTileM * kSkinnyGemmMaxRows * sizeof(float);
}

template <typename OutT>
cudaError_t SkinnyGemm(const SkinnyGemmParams<OutT>& params, cudaStream_t stream) {
  SkinnyGemmParams<OutT> p = params;
  if (p.ldx == 0) p.ldx = p.k;
  if (p.ldy == 0) p.ldy = p.m;
  if (p.n < kSkinnyGemmMinRows || p.n > kSkinnyGemmMaxRows || p.m < 1 || p.k < 32 ||
      p.k % 32 != 0 || p.ldx < p.k || p.ldx % 8 != 0 || p.ldy < p.m || p.x == nullptr ||
      p.w == nullptr || p.y == nullptr || !Aligned16(p.x) || !Aligned16(p.w)) {
    return cudaErrorInvalidValue;
  }
  switch (p.variant) {
    case 0:
      return LaunchTiles<2, 2, 1>(p, stream);
    case 1:
      return LaunchTiles<4, 2, 1>(p, stream);
    case 2:
      return LaunchTiles<2, 4, 1>(p, stream);
    case 3:
      return LaunchTiles<4, 1, 1>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

template cudaError_t SkinnyGemm<float>(const SkinnyGemmParams<float>&, cudaStream_t);
template cudaError_t SkinnyGemm<__nv_bfloat16>(const SkinnyGemmParams<__nv_bfloat16>&,
                                               cudaStream_t);

}  // namespace kiln::kernels
