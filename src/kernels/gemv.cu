#include <type_traits>

#include "kernels/gemv.cuh"

namespace kiln::kernels {
namespace {

bool Aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// y written over a prologue input that other blocks may still be reading.
template <typename OutT>
bool AliasesInput(const GemvParams<OutT>& p) {
  const void* y = p.y;
  const GemvPrologueParams& q = p.prologue;
  return y == q.addend || y == q.residual || y == q.residual_out;
}

// kWarpRows: rows of w per warp. Plain products (4+ activation rows here) share each x load
// between two weight rows (halves the L1 traffic); the loads in flight per lane stay at 8 × 16
// bytes. With a prologue also two
// rows per warp: half the blocks, so half the per-block recomputation of x (and its L2 reads);
// the SiLU·mul epilogue needs its (gate, up) pair in one warp.
template <int kRows, GemvPrologue kPro, GemvEpilogue kEpi, typename OutT>
cudaError_t LaunchVec(const GemvParams<OutT>& p, cudaStream_t stream) {
  const bool fp8 = p.w_fp8 != nullptr;
  // SiLU·mul: two pairs a warp (half the blocks again: the prologue before gate_up is paid per
  // block); RoPE: one pair (qkv is small, more blocks balance better).
  // Plain products reach this kernel only from kGemvRowKernelMaxRows + 1 rows (4+): two rows.
  static_assert(kPro != GemvPrologue::kNone || kEpi != GemvEpilogue::kStore ||
                    kRows > kGemvRowKernelMaxRows,
                "plain products of few rows take GemvRowKernel");
  constexpr int kWarpRows = kEpi == GemvEpilogue::kSiluMul ? 4 : 2;
  constexpr int kUnroll = 8 / kWarpRows;
  const int64_t warps = (p.out_features + kWarpRows - 1) / kWarpRows;
  const int64_t blocks = (warps + kGemvWarps - 1) / kGemvWarps;
  const size_t smem =
      kPro == GemvPrologue::kNone ? 0 : static_cast<size_t>(p.in_features) * sizeof(__nv_bfloat16);
  if (fp8) {
    return LaunchPdl(GemvVecKernel<kRows, kWarpRows, kUnroll, kPro, kEpi, OutT, true>,
                     dim3(static_cast<unsigned>(blocks)), dim3(kGemvWarps * 32), smem, stream, p);
  }
  return LaunchPdl(GemvVecKernel<kRows, kWarpRows, kUnroll, kPro, kEpi, OutT, false>,
                   dim3(static_cast<unsigned>(blocks)), dim3(kGemvWarps * 32), smem, stream, p);
}

// A plain product of kRows activation rows: kGemvSplit warps per output row, one row per block.
template <int kRows, typename OutT>
cudaError_t LaunchRow(const GemvParams<OutT>& p, cudaStream_t stream) {
  if (p.w_fp8 != nullptr) {
    return LaunchPdl(GemvRowKernel<kRows, OutT, true>, dim3(static_cast<unsigned>(p.out_features)),
                     dim3(kGemvSplit * 32), 0, stream, p);
  }
  return LaunchPdl(GemvRowKernel<kRows, OutT, false>, dim3(static_cast<unsigned>(p.out_features)),
                   dim3(kGemvSplit * 32), 0, stream, p);
}

// The 1-row fused kernels (prologue and/or pairing epilogue), arguments already checked.
template <GemvPrologue kPro, typename OutT>
cudaError_t LaunchFused(const GemvParams<OutT>& p, cudaStream_t stream) {
  if (p.silu_mul_epilogue) return LaunchVec<1, kPro, GemvEpilogue::kSiluMul>(p, stream);
  if constexpr (std::is_same_v<OutT, __nv_bfloat16>) {
    if (p.rope.enabled) return LaunchVec<1, kPro, GemvEpilogue::kRope>(p, stream);
  }
  if constexpr (kPro == GemvPrologue::kNone) {
    return LaunchRow<1>(p, stream);
  } else {
    return LaunchVec<1, kPro, GemvEpilogue::kStore>(p, stream);
  }
}

template <typename OutT>
bool RopeArgsOk(const GemvParams<OutT>& p) {
  const GemvRopeParams& r = p.rope;
  return std::is_same_v<OutT, __nv_bfloat16> && !p.silu_mul_epilogue && r.head_dim > 0 &&
         r.head_dim % 2 == 0 && r.num_heads > 0 && r.num_kv_heads > 0 &&
         static_cast<int64_t>(r.num_heads + 2 * r.num_kv_heads) * r.head_dim == p.out_features &&
         r.positions != nullptr && r.inv_freq != nullptr && r.slot_mapping != nullptr &&
         r.k_cache != nullptr && r.v_cache != nullptr;
}

}  // namespace

template <typename OutT>
cudaError_t Gemv(const GemvParams<OutT>& params, cudaStream_t stream) {
  GemvParams<OutT> p = params;
  const int64_t y_width = p.silu_mul_epilogue ? p.out_features / 2 : p.out_features;
  if (p.ldx == 0) p.ldx = p.in_features;
  if (p.ldy == 0) p.ldy = y_width;
  if (p.rows < 0 || p.rows > kGemvMaxRows || p.out_features < 0 || p.in_features < 0 ||
      p.ldx < p.in_features || p.ldy < y_width) {
    return cudaErrorInvalidValue;
  }
  if (p.out_features > 0x7fffffff) return cudaErrorInvalidValue;  // grid.x (GemvRowKernel)
  const GemvPrologueParams& q = p.prologue;
  const bool prologue = q.kind == GemvPrologue::kAddRmsNorm;
  const bool fp8 = p.w_fp8 != nullptr;
  if (fp8 && (p.w != nullptr || p.w_scale == nullptr)) return cudaErrorInvalidValue;
  const bool weights_ok = fp8 ? Aligned16(p.w_fp8) : p.w != nullptr && Aligned16(p.w);
  if (prologue || p.silu_mul_epilogue || p.rope.enabled) {
    const bool ok = p.rows == 1 && p.in_features % (fp8 ? 16 : 8) == 0 &&
                    (!p.silu_mul_epilogue || p.out_features % 2 == 0) &&
                    (!p.rope.enabled || RopeArgsOk(p)) && weights_ok && p.y != nullptr &&
                    (prologue ? p.in_features <= kGemvPrologueMaxFeatures && !AliasesInput(p) &&
                                    q.residual != nullptr && q.norm_weight != nullptr &&
                                    Aligned16(q.residual) && Aligned16(q.norm_weight) &&
                                    (q.addend == nullptr ||
                                     (Aligned16(q.addend) && q.residual_out != nullptr &&
                                      Aligned16(q.residual_out) && q.residual_out != q.residual &&
                                      q.residual_out != q.addend))
                              : p.x != nullptr && Aligned16(p.x));
    if (!ok) return cudaErrorInvalidValue;
    if (p.out_features == 0) return cudaSuccess;
    if (prologue) return LaunchFused<GemvPrologue::kAddRmsNorm>(p, stream);
    return LaunchFused<GemvPrologue::kNone>(p, stream);
  }
  if (p.rows == 0 || p.out_features == 0) return cudaSuccess;
  if (p.x == nullptr || (p.w == nullptr && !fp8) || p.y == nullptr) return cudaErrorInvalidValue;
  const bool vectorized = p.in_features % (fp8 ? 16 : 8) == 0 && p.ldx % 8 == 0 &&
                          Aligned16(p.x) && (fp8 ? Aligned16(p.w_fp8) : Aligned16(p.w));
  if (!vectorized) {
    const int64_t blocks = (p.out_features + kGemvWarps - 1) / kGemvWarps;
    return LaunchPdl(GemvScalarKernel<OutT>, dim3(static_cast<unsigned>(blocks)),
                     dim3(kGemvWarps * 32), 0, stream, p);
  }
  static_assert(kGemvRowKernelMaxRows == 3, "the switch below routes rows 1..3 to LaunchRow");
  switch (p.rows) {
    case 1: return LaunchRow<1>(p, stream);
    case 2: return LaunchRow<2>(p, stream);
    case 3: return LaunchRow<3>(p, stream);
    case 4: return LaunchVec<4, GemvPrologue::kNone, GemvEpilogue::kStore>(p, stream);
    case 5: return LaunchVec<5, GemvPrologue::kNone, GemvEpilogue::kStore>(p, stream);
    case 6: return LaunchVec<6, GemvPrologue::kNone, GemvEpilogue::kStore>(p, stream);
    case 7: return LaunchVec<7, GemvPrologue::kNone, GemvEpilogue::kStore>(p, stream);
    default: return LaunchVec<8, GemvPrologue::kNone, GemvEpilogue::kStore>(p, stream);
  }
}

template cudaError_t Gemv<float>(const GemvParams<float>&, cudaStream_t);
template cudaError_t Gemv<__nv_bfloat16>(const GemvParams<__nv_bfloat16>&, cudaStream_t);

}  // namespace kiln::kernels
