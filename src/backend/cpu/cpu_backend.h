// CpuBackend: the reference Backend (backend/backend.h). Runs a Llama-family decoder (Llama,
// Qwen2, Qwen3 by ModelConfig flags) in float32 on the CPU: weights converted to float32 at
// creation (dummy weights materialized through Tensor::DummyValue), projections through
// cpu/linear.h (each row's result independent of the batch: chunked or batched decode gives the
// same bits as decoding alone), everything else through the reference ops in cpu/ops.h, attention
// split over threads.
// This is the specification the CUDA backend is checked against, so it favours clarity.
//
// KV cache: per layer, K and V of [num_kv_blocks * block_size, num_kv_heads, head_dim] float32.
// Not responsible for: block allocation (the engine's KV manager hands out block ids in
// [0, num_kv_blocks())), scheduling, tokenization.
//
// Thread-safety: used by one thread at a time (the engine thread); it uses num_threads worker
// threads internally (projections and attention).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "kiln/status.h"
#include "model/weights.h"

namespace kiln {

struct CpuBackendOptions {
  int block_size = 16;        // tokens per KV block
  int64_t num_kv_blocks = 0;  // 0 → kv_cache_memory_bytes / bytes per block
  int64_t kv_cache_memory_bytes = int64_t{1} << 30;  // budget when num_kv_blocks == 0
  int num_threads = 0;                               // 0 → hardware concurrency
  // FP8 (the CPU twin of the CUDA path; see quant/fp8_quant.h). quantization: "auto" (as the
  // checkpoint stores the projections), "none" (dense: a quantized checkpoint is dequantized),
  // "fp8" (a dense checkpoint's projections quantized to E4M3 at creation with
  // quantization_scale "per-channel" | "per-tensor" scales). FP8 projections quantize their
  // input activations as quant::ActivationSchemeFor says. kv_cache_dtype: the KV cache's element
  // type (cpu/ops.h KvCacheLayer): "auto" | "float32" → float32; "bfloat16" → bf16 (2 bytes,
  // round to nearest even on write); "fp8" → E4M3 codes with per-tensor scales 1.0 (1 byte: a
  // memory budget holds 4× the float32 blocks). Attention converts on the fly.
  std::string quantization = "auto";
  std::string quantization_scale = "per-channel";
  std::string kv_cache_dtype = "auto";
  Status Validate() const;
};

// Converts the weights and allocates the KV cache. Errors: invalid options, weights that do not
// match the config, a KV budget too small for one block.
StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(std::shared_ptr<const LoadedModel> model,
                                                    const CpuBackendOptions& options);

}  // namespace kiln
