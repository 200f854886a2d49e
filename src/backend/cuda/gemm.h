// Gemm: the CUDA backend's matrix products through cuBLASLt.
//
//   Y[n, m] = X[n, k] · W[m, k]^T (+ bias[m])     (row-major; W in HF [out, in] layout)
//
// bf16 mode: X, W bf16, accumulation and scale in float32, Y bf16 or float32 (the lm_head writes
// float32 logits). float32 mode: everything float32 with CUBLAS_COMPUTE_32F (TF32 off), for the
// exact-parity checks. The bias is fused as a cuBLASLt epilogue.
//
// The algorithm for each (m, n, k, dtypes, bias) shape is chosen once and cached: cuBLASLt's
// heuristic proposes up to 8 candidates and the fastest on the first call's operands wins (the
// first candidate when that call is being graph-captured). Every call uses the same preallocated
// workspace, so calls are legal inside CUDA graph capture once the shape has been seen.
//
// bf16 calls with at most gemv_max_rows() rows of X (default kDefaultGemvMaxRows = 3: decode at
// batch 1 – 3) go to kernels::Gemv instead, which streams W closer to copy bandwidth than
// cuBLASLt does there (H100, Qwen2-7B decode step: batch 1 5.28 ms, batch 2 6.04 → 5.63 ms); from
// 4 rows on cuBLASLt is faster (docs/PERFORMANCE.md, "Batch-1 GEMV: four warps per weight row").
// set_gemv_max_rows() changes the routing for A/B measurements (no environment switches in core
// code, DESIGN.md).
//
// Thread-safety: one Gemm per backend, used by one thread.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <library_types.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "backend/cuda/cuda_util.h"
#include "kernels/gemv.h"
#include "kiln/status.h"

namespace kiln::cuda {

class Gemm final {
 public:
  Gemm() = default;
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // workspace_bytes: cuBLASLt workspace (32 MiB is plenty on Hopper).
  Status Init(size_t workspace_bytes = size_t{32} << 20);

  // Y = X W^T (+ bias). in_type is the type of X and W (CUDA_R_16BF or CUDA_R_32F); out_type is
  // the type of Y (in_type, or CUDA_R_32F for bf16 inputs); bias (nullable, [m]) has out_type.
  // ldx / ldy: row strides of X and Y in elements (0 → k and m).
  Status Run(cudaDataType_t in_type, cudaDataType_t out_type, const void* x, const void* w,
             const void* bias, void* y, int64_t n, int64_t m, int64_t k, cudaStream_t stream,
             int64_t ldx = 0, int64_t ldy = 0);

  // FP8 W8A8 through cuBLASLt's FP8 tensor-core kernels: Y[n, m] = (x_scale[r] · w_scale[o]) ·
  // sum_k xq[r, k] wq[o, k] (+ bias[o]), xq and wq E4M3 (row-major, row strides k), x_scale
  // [n] (dynamic per-token) and w_scale [m] (per output channel) float32 on the device, applied
  // as cuBLASLt outer-vector scales; Y and bias of out_type (CUDA_R_16BF or CUDA_R_32F).
  // k % 16 == 0.
  Status RunFp8(const void* xq, const float* x_scale, const void* wq, const float* w_scale,
                const void* bias, void* y, cudaDataType_t out_type, int64_t n, int64_t m,
                int64_t k, cudaStream_t stream);
  // W8A16 for the few rows of decode: Y = X W^T (+ bias) with bf16 X and FP8 wq [m, k] scaled by
  // w_scale [m], through kernels::Gemv (n <= kernels::kGemvMaxRows).
  Status RunGemvFp8(cudaDataType_t out_type, const void* x, const void* wq, const float* w_scale,
                    const void* bias, void* y, int64_t n, int64_t m, int64_t k,
                    cudaStream_t stream);

  size_t workspace_bytes() const { return workspace_.size_bytes(); }

  // Whether a 1-row product of in_type with k input features takes kernels::Gemv with a fused
  // prologue (bf16, n == 1 routed to Gemv, k % 8 == 0, k <= kernels::kGemvPrologueMaxFeatures).
  bool FusesPrologue(cudaDataType_t in_type, int64_t n, int64_t k) const;
  // y[1, m] = x W^T (+ bias), all bf16, with x computed by `prologue` (kernels/gemv.h) from the
  // outputs of the kernels it replaces; with silu_mul_epilogue, y[1, m / 2] = SiluMul of that
  // (W = gate | up rows); with rope (enabled), the RoPE + KV-cache write of kernels::RopeKvCache
  // applied to y = [q | k | v]. Only where FusesPrologue(CUDA_R_16BF, 1, k).
  // w_scale non-null: w holds FP8 E4M3 rows scaled by w_scale [m] (k % 16 == 0).
  Status RunPrologue(const kernels::GemvPrologueParams& prologue, const void* w, const void* bias,
                     void* y, int64_t m, int64_t k, cudaStream_t stream,
                     bool silu_mul_epilogue = false, const kernels::GemvRopeParams* rope = nullptr,
                     const float* w_scale = nullptr);

  static constexpr int kDefaultGemvMaxRows = kernels::kGemvRowKernelMaxRows;
  // bf16 calls with n <= rows (clamped to [0, kernels::kGemvMaxRows]) use kernels::Gemv.
  void set_gemv_max_rows(int rows);
  int gemv_max_rows() const { return gemv_max_rows_; }

 private:
  struct Key {
    int64_t m, n, k, ldx, ldy;
    int in_type, out_type;
    bool bias;
    bool operator<(const Key& o) const {
      return std::tie(m, n, k, ldx, ldy, in_type, out_type, bias) <
             std::tie(o.m, o.n, o.k, o.ldx, o.ldy, o.in_type, o.out_type, o.bias);
    }
    bool fp8() const { return in_type == CUDA_R_8F_E4M3; }
  };
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  struct Operands {
    const void* x;
    const void* w;
    const void* bias;
    void* y;
    const float* x_scale = nullptr;  // FP8: outer-vector scales
    const float* w_scale = nullptr;
  };
  // Sets the per-call pointers (bias, FP8 scales) of a plan's descriptor.
  Status SetPointers(Plan& plan, const Operands& ops);
  // The kernels::Gemv path of Run (bf16 inputs, n <= kGemvMaxRows).
  Status RunGemv(cudaDataType_t out_type, const void* x, const void* w, const void* bias, void* y,
                 int64_t n, int64_t m, int64_t k, cudaStream_t stream, int64_t ldx, int64_t ldy);
  StatusOr<Plan*> GetPlan(const Key& key, const Operands& ops, cudaStream_t stream);
  StatusOr<int> Autotune(Plan& plan, const cublasLtMatmulHeuristicResult_t* results, int found,
                         const Operands& ops, cudaStream_t stream);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, Plan> plans_;
  int gemv_max_rows_ = kDefaultGemvMaxRows;
};

}  // namespace kiln::cuda
