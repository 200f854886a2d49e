// CudaOps: the CUDA backend's implementation of the model layer's op interface (model/llama.h
// LayerOps) for one run of the model (one step, or one captured decode graph): primitive ops map
// to kernels and cuBLASLt GEMMs; the fused forms are where the backend fuses:
//  - NormLinear / NormQkvRope / NormGateUpSiluMul at one bf16 row (batch-1 decode): one GEMV
//    whose prologue computes add+RMSNorm and whose epilogue applies RoPE + the KV write (no q/k
//    norm, rotate-half) or SiLU·mul (kernels/gemv.h). The residual then ping-pongs between two
//    one-row buffers, since every block of a fused GEMV reads the old residual while block 0
//    writes the new one.
//  - NormQkvRope at decode steps of more rows (bf16, no q/k norm, rotate-half): the RoPE + KV
//    write is deferred into the following Attention (kernels::PagedAttentionFusedRope).
// Everything else runs the primitives in order, exactly as the CPU reference does.
//
// A CudaOps lives for one run: the backend constructs it with the run's RunShape, calls
// LlamaForward, and drops it (inside graph capture too: the ops only queue work on the stream).
// Thread-safety: the backend's thread only.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/device_fill.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/step_metadata.h"
#include "model/llama.h"

namespace kiln::cuda {

// What one run's ops need from the backend (all owned by it).
struct CudaOpsContext {
  const ModelShape* shape = nullptr;
  ElemType dtype = ElemType::kBF16;
  int block_size = 16;
  const DeviceWeights* weights = nullptr;
  DeviceActivations* act = nullptr;
  const KvPool* kv = nullptr;
  const StepMetadata* meta = nullptr;
  Gemm* gemm = nullptr;
  cudaStream_t stream = nullptr;
};

class CudaOps final : public LayerOps {
 public:
  CudaOps(const CudaOpsContext& ctx, const RunShape& run);

  Status Embed(const Tensor& table) override;
  Status AddRmsNorm(const NormWeight& norm, bool add_sublayer) override;
  Status Linear(const LinearWeight& w, Act in, Act out) override;
  Status ApplyRopeKvWrite(const RopeKvWrite& rope) override;
  Status Attention(int layer) override;
  Status SiluMul() override;
  Status Logits(const LinearWeight& lm_head) override;
  Status Hidden() override;

  Status NormLinear(const NormWeight& norm, bool add_sublayer, const LinearWeight& w,
                    Act out) override;
  Status NormQkvRope(const NormWeight& norm, bool add_sublayer, const LinearWeight& qkv,
                     const RopeKvWrite& rope) override;
  Status NormGateUpSiluMul(const NormWeight& norm, bool add_sublayer,
                           const LinearWeight& gate_up) override;

 private:
  template <typename T>
  Status AddRmsNormT(const NormWeight& norm, bool add_sublayer);
  template <typename T>
  Status RopeKvWriteT(const RopeKvWrite& rope);
  template <typename T>
  Status AttentionT(int layer);
  template <typename T>
  Status SiluMulT();
  // The batch-1 GEMV with an add+RMSNorm prologue (and an optional epilogue).
  Status FusedNormGemv(const NormWeight& norm, bool add_sublayer, const LinearWeight& w, Act out,
                       bool silu_mul, const kernels::GemvRopeParams* rope);
  void* Buffer(Act act) const;
  cudaDataType_t gemm_type() const;

  CudaOpsContext ctx_;
  RunShape run_;
  bool fuse_norm_ = false;  // one bf16 row: fused GEMVs
  void* residual_;          // the current residual buffer (ping-pongs at batch 1)
  void* residual_spare_;
  // NormQkvRope left its RoPE + KV write to the next Attention (rope.layer == that layer).
  bool rope_pending_ = false;
  RopeKvWrite pending_rope_;
};

}  // namespace kiln::cuda
