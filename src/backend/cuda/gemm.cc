#include "backend/cuda/gemm.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/gemv.h"

namespace kiln::cuda {
namespace {

Status LtStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status::Internal(std::string("cuBLASLt ") + what + " failed: status " +
                          std::to_string(static_cast<int>(st)));
}

#define KILN_LT_RETURN_IF_ERROR(expr) KILN_RETURN_IF_ERROR(LtStatus((expr), #expr))

// Y[n, m] = X[n, k] W[m, k]^T (+ bias) through kernels::Gemv; OutT is the type of Y and bias.
template <typename OutT>
cudaError_t LaunchGemv(const void* x, const void* w, const void* bias, void* y, int64_t n,
                       int64_t m, int64_t k, cudaStream_t stream, int64_t ldx, int64_t ldy) {
  kernels::GemvParams<OutT> p;
  p.x = static_cast<const __nv_bfloat16*>(x);
  p.w = static_cast<const __nv_bfloat16*>(w);
  p.bias = static_cast<const OutT*>(bias);
  p.y = static_cast<OutT*>(y);
  p.rows = static_cast<int>(n);
  p.out_features = m;
  p.in_features = k;
  p.ldx = ldx;
  p.ldy = ldy;
  return kernels::Gemv(p, stream);
}

}  // namespace

Gemm::~Gemm() {
  for (auto& [key, plan] : plans_) {
    if (plan.desc) cublasLtMatmulDescDestroy(plan.desc);
    if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.b) cublasLtMatrixLayoutDestroy(plan.b);
    if (plan.c) cublasLtMatrixLayoutDestroy(plan.c);
  }
  if (handle_) cublasLtDestroy(handle_);
}

Status Gemm::Init(size_t workspace_bytes) {
  KILN_LT_RETURN_IF_ERROR(cublasLtCreate(&handle_));
  return workspace_.Allocate(workspace_bytes);
}

void Gemm::set_gemv_max_rows(int rows) {
  gemv_max_rows_ = rows < 0 ? 0 : (rows > kernels::kGemvMaxRows ? kernels::kGemvMaxRows : rows);
}

StatusOr<Gemm::Plan*> Gemm::GetPlan(const Key& key, const Operands& ops, cudaStream_t stream) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return &it->second;
  Plan plan;
  const auto in_type = static_cast<cudaDataType_t>(key.in_type);
  const auto out_type = static_cast<cudaDataType_t>(key.out_type);
  const cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F));
  // Column-major view: Y^T[m, n] = W[k, m]^T · X^T[k, n].
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                         &trans_a, sizeof(trans_a)));
  KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                         &trans_b, sizeof(trans_b)));
  if (key.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    const cudaDataType_t bias_type = out_type;
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  if (key.fp8()) {
    // W is cuBLASLt's A (m rows after the transpose), X its B (n columns): outer-vector scales.
    const cublasLtMatmulMatrixScale_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer, sizeof(outer)));
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer, sizeof(outer)));
    // FP8 products accumulate with the tensor cores' fast accumulation (as TensorRT-LLM and vLLM
    // run them); the per-token and per-channel scales bound each product's range.
    const int8_t fast_accum = 1;
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum, sizeof(fast_accum)));
    KILN_RETURN_IF_ERROR(SetPointers(plan, ops));
  }
  KILN_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan.a, in_type, key.k, key.m, key.k));
  KILN_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan.b, in_type, key.k, key.n, key.ldx));
  KILN_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan.c, out_type, key.m, key.n, key.ldy));

  cublasLtMatmulPreference_t pref = nullptr;
  KILN_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = workspace_.size_bytes();
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      handle_, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    cublasLtMatmulDescDestroy(plan.desc);
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    return Status::Internal("cuBLASLt found no algorithm for m=" + std::to_string(key.m) +
                            " n=" + std::to_string(key.n) + " k=" + std::to_string(key.k));
  }
  plan.algo = results[0].algo;
  if (found > 1) {
    KILN_ASSIGN_OR_RETURN(int best, Autotune(plan, results, found, ops, stream));
    plan.algo = results[best].algo;
  }
  auto [pos, inserted] = plans_.emplace(key, plan);
  return &pos->second;
}

// Times each candidate algorithm on the call's own operands (its output is rewritten by the real
// call that follows) and returns the fastest; the heuristic's first choice when the stream is
// being captured into a graph (timing is impossible there).
StatusOr<int> Gemm::Autotune(Plan& plan, const cublasLtMatmulHeuristicResult_t* results,
                             int found, const Operands& ops, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return 0;
  KILN_RETURN_IF_ERROR(SetPointers(plan, ops));
  cudaEvent_t start, stop;
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  KILN_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  const float alpha = 1.0f, beta = 0.0f;
  int best = 0;
  float best_ms = 0.0f;
  for (int i = 0; i < found; ++i) {
    auto run = [&]() {
      return cublasLtMatmul(handle_, plan.desc, &alpha, ops.w, plan.a, ops.x, plan.b, &beta, ops.y,
                            plan.c, ops.y, plan.c, &results[i].algo, workspace_.get(),
                            workspace_.size_bytes(), stream);
    };
    if (run() != CUBLAS_STATUS_SUCCESS) continue;  // warm-up; unusable candidates are skipped
    cudaEventRecord(start, stream);
    constexpr int kReps = 5;
    for (int r = 0; r < kReps; ++r) run();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    if (i == 0 || ms < best_ms) {
      best = i;
      best_ms = ms;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  KILN_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return best;
}

Status Gemm::Run(cudaDataType_t in_type, cudaDataType_t out_type, const void* x, const void* w,
                 const void* bias, void* y, int64_t n, int64_t m, int64_t k, cudaStream_t stream,
                 int64_t ldx, int64_t ldy) {
  if (n == 0) return Status::Ok();
  if (ldx == 0) ldx = k;
  if (ldy == 0) ldy = m;
  if (in_type == CUDA_R_16BF && n <= gemv_max_rows_) {
    return RunGemv(out_type, x, w, bias, y, n, m, k, stream, ldx, ldy);
  }
  Key key{m, n, k, ldx, ldy, static_cast<int>(in_type), static_cast<int>(out_type),
          bias != nullptr};
  const Operands ops{x, w, bias, y};
  KILN_ASSIGN_OR_RETURN(Plan * plan, GetPlan(key, ops, stream));
  KILN_RETURN_IF_ERROR(SetPointers(*plan, ops));
  const float alpha = 1.0f, beta = 0.0f;
  KILN_LT_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan->desc, &alpha, w, plan->a, x, plan->b,
                                         &beta, y, plan->c, y, plan->c, &plan->algo,
                                         workspace_.get(), workspace_.size_bytes(), stream));
  return Status::Ok();
}

Status Gemm::SetPointers(Plan& plan, const Operands& ops) {
  if (ops.bias != nullptr) {
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ops.bias, sizeof(ops.bias)));
  }
  if (ops.w_scale != nullptr) {
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ops.w_scale, sizeof(ops.w_scale)));
  }
  if (ops.x_scale != nullptr) {
    KILN_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &ops.x_scale, sizeof(ops.x_scale)));
  }
  return Status::Ok();
}

Status Gemm::RunFp8(const void* xq, const float* x_scale, const void* wq, const float* w_scale,
                    const void* bias, void* y, cudaDataType_t out_type, int64_t n, int64_t m,
                    int64_t k, cudaStream_t stream) {
  if (n == 0) return Status::Ok();
  if (k % 16 != 0 || x_scale == nullptr || w_scale == nullptr) {
    return Status::InvalidArgument("Gemm::RunFp8 needs k % 16 == 0 and both scale vectors (k=" +
                                   std::to_string(k) + ")");
  }
  if (out_type != CUDA_R_16BF && out_type != CUDA_R_32F) {
    return Status::InvalidArgument("Gemm::RunFp8: output must be bf16 or float32");
  }
  Key key{m, n, k, k, m, static_cast<int>(CUDA_R_8F_E4M3), static_cast<int>(out_type),
          bias != nullptr};
  Operands ops{xq, wq, bias, y, x_scale, w_scale};
  KILN_ASSIGN_OR_RETURN(Plan * plan, GetPlan(key, ops, stream));
  KILN_RETURN_IF_ERROR(SetPointers(*plan, ops));
  const float alpha = 1.0f, beta = 0.0f;
  KILN_LT_RETURN_IF_ERROR(cublasLtMatmul(handle_, plan->desc, &alpha, wq, plan->a, xq, plan->b,
                                         &beta, y, plan->c, y, plan->c, &plan->algo,
                                         workspace_.get(), workspace_.size_bytes(), stream));
  return Status::Ok();
}

Status Gemm::RunGemvFp8(cudaDataType_t out_type, const void* x, const void* wq,
                        const float* w_scale, const void* bias, void* y, int64_t n, int64_t m,
                        int64_t k, cudaStream_t stream) {
  auto launch = [&]<typename OutT>(OutT*) {
    kernels::GemvParams<OutT> p;
    p.x = static_cast<const __nv_bfloat16*>(x);
    p.w_fp8 = static_cast<const uint8_t*>(wq);
    p.w_scale = w_scale;
    p.bias = static_cast<const OutT*>(bias);
    p.y = static_cast<OutT*>(y);
    p.rows = static_cast<int>(n);
    p.out_features = m;
    p.in_features = k;
    return kernels::Gemv(p, stream);
  };
  cudaError_t err;
  if (out_type == CUDA_R_16BF) {
    err = launch(static_cast<__nv_bfloat16*>(nullptr));
  } else if (out_type == CUDA_R_32F) {
    err = launch(static_cast<float*>(nullptr));
  } else {
    return Status::InvalidArgument("Gemm: FP8 GEMV needs a bf16 or float32 output");
  }
  if (err != cudaSuccess) {
    return Status::Internal("FP8 Gemv (n=" + std::to_string(n) + " m=" + std::to_string(m) +
                            " k=" + std::to_string(k) + ") failed: " + cudaGetErrorString(err));
  }
  return Status::Ok();
}

bool Gemm::FusesPrologue(cudaDataType_t in_type, int64_t n, int64_t k) const {
  return in_type == CUDA_R_16BF && n == 1 && n <= gemv_max_rows_ && k % 8 == 0 &&
         k <= kernels::kGemvPrologueMaxFeatures;
}

Status Gemm::RunPrologue(const kernels::GemvPrologueParams& prologue, const void* w,
                         const void* bias, void* y, int64_t m, int64_t k, cudaStream_t stream,
                         bool silu_mul_epilogue, const kernels::GemvRopeParams* rope,
                         const float* w_scale) {
  if (!FusesPrologue(CUDA_R_16BF, 1, k)) {
    return Status::InvalidArgument("Gemm::RunPrologue: k=" + std::to_string(k) +
                                   " is not fused (see FusesPrologue)");
  }
  kernels::GemvParams<__nv_bfloat16> p;
  if (w_scale != nullptr) {
    p.w_fp8 = static_cast<const uint8_t*>(w);
    p.w_scale = w_scale;
  } else {
    p.w = static_cast<const __nv_bfloat16*>(w);
  }
  p.bias = static_cast<const __nv_bfloat16*>(bias);
  p.y = static_cast<__nv_bfloat16*>(y);
  p.rows = 1;
  p.out_features = m;
  p.in_features = k;
  p.prologue = prologue;
  p.silu_mul_epilogue = silu_mul_epilogue;
  if (rope != nullptr) p.rope = *rope;
  const cudaError_t err = kernels::Gemv(p, stream);
  if (err != cudaSuccess) {
    return Status::Internal("Gemv with prologue (m=" + std::to_string(m) +
                            " k=" + std::to_string(k) + ") failed: " + cudaGetErrorString(err));
  }
  return Status::Ok();
}

Status Gemm::RunGemv(cudaDataType_t out_type, const void* x, const void* w, const void* bias,
                     void* y, int64_t n, int64_t m, int64_t k, cudaStream_t stream, int64_t ldx,
                     int64_t ldy) {
  cudaError_t err;
  if (out_type == CUDA_R_16BF) {
    err = LaunchGemv<__nv_bfloat16>(x, w, bias, y, n, m, k, stream, ldx, ldy);
  } else if (out_type == CUDA_R_32F) {
    err = LaunchGemv<float>(x, w, bias, y, n, m, k, stream, ldx, ldy);
  } else {
    return Status::InvalidArgument("Gemm: bf16 inputs need a bf16 or float32 output");
  }
  if (err != cudaSuccess) {
    return Status::Internal("Gemv (n=" + std::to_string(n) + " m=" + std::to_string(m) +
                            " k=" + std::to_string(k) + ") failed: " + cudaGetErrorString(err));
  }
  return Status::Ok();
}

}  // namespace kiln::cuda
