// CpuOps: the CPU backend's implementation of the model layer's op interface (model/llama.h
// LayerOps), float32 throughout, over CpuWeights (every weight of a LlamaModel as float32,
// indexed by the weight ids the model assigns) and the backend's KV cache. It implements only the
// primitive ops: the fused forms keep LayerOps' defaults (the primitives in order), so the CPU
// backend stays the plain specification the CUDA backend's fusions are checked against.
//
// Activations live in CpuOps and are resized per step; one CpuOps serves one backend.
// Thread-safety: used by the engine thread only; projections and attention use num_threads
// worker threads internally.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/forward_batch.h"
#include "model/llama.h"
#include "quant/fp8_quant.h"

namespace kiln::cpu {

// Every weight of a model as float32 (dense and dequantized).
struct CpuWeights {
  struct Linear {
    std::vector<float> w;     // [out, in]
    std::vector<float> bias;  // [out] or empty
    const float* data = nullptr;  // w.data(), or the embedding table for a tied lm_head
    bool fp8_input = false;       // FP8 weights: the input is quantized with fp8_scheme first
    quant::Fp8ActivationScheme fp8_scheme;
  };
  std::vector<float> embed;      // [vocab, hidden]
  std::vector<Linear> linears;   // by LinearWeight::id
  std::vector<std::vector<float>> norms;  // by NormWeight::id

  static CpuWeights FromModel(const LlamaModel& model);
  // Bytes of float32 weights FromModel would allocate (a tied lm_head counted once).
  static double Float32Bytes(const LlamaModel& model);
};

// Per layer: K and V of [num_slots, num_kv_heads, head_dim] elements of `element` (ops.h
// KvCacheLayer): float32, bfloat16 or E4M3 codes with per-tensor scales.
struct CpuKvCache {
  KvElement element = KvElement::kF32;
  quant::Fp8KvScales scales;          // kFp8E4M3 only
  std::vector<std::vector<uint8_t>> k, v;  // [num_layers][num_slots * kv_size * element bytes]

  KvCacheLayer Layer(size_t layer) {
    return KvCacheLayer{element, k[layer].data(), v[layer].data(), scales.k_scale,
                        scales.v_scale};
  }
};

class CpuOps final : public LayerOps {
 public:
  // The KV write converts K and V to the cache's element type; attention reads them back.
  CpuOps(const LlamaModel& model, const CpuWeights& weights, CpuKvCache& cache, int block_size,
         int num_threads)
      : model_(model),
        weights_(weights),
        cache_(cache),
        block_size_(block_size),
        num_threads_(num_threads) {}

  // Binds the step: its batch, its token ids (deferred tokens resolved) and the outputs.
  void BeginStep(const ForwardBatch& batch, const std::vector<int32_t>& token_ids,
                 std::vector<float>* logits, std::vector<float>* hidden);

  Status Embed(const Tensor& table) override;
  Status AddRmsNorm(const NormWeight& norm, bool add_sublayer) override;
  Status Linear(const LinearWeight& w, Act in, Act out) override;
  Status ApplyRopeKvWrite(const RopeKvWrite& rope) override;
  Status Attention(int layer) override;
  Status SiluMul() override;
  Status Logits(const LinearWeight& lm_head) override;
  Status Hidden() override;

 private:
  std::vector<float>& Buffer(Act act);

  const LlamaModel& model_;
  const CpuWeights& weights_;
  CpuKvCache& cache_;
  int block_size_;
  int num_threads_;
  std::vector<float> fp8_input_;  // an FP8 projection's input after quantization
  // The current step.
  const ForwardBatch* batch_ = nullptr;
  const std::vector<int32_t>* token_ids_ = nullptr;
  std::vector<float>* logits_ = nullptr;
  std::vector<float>* hidden_ = nullptr;
  int n_ = 0;
  // Activations ([n, width] float32) and q/k/v split out of kQkv for RoPE and attention.
  std::vector<float> residual_, sublayer_, normed_, qkv_, attn_, gate_up_, act_, q_, k_, v_;
};

}  // namespace kiln::cpu
