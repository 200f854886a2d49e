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

#include "backend/backend.h"
#include "kiln/status.h"
#include "model/weights.h"

namespace kiln {

struct CpuBackendOptions {
  int block_size = 16;        // tokens per KV block
  int64_t num_kv_blocks = 0;  // 0 → kv_cache_memory_bytes / bytes per block
  int64_t kv_cache_memory_bytes = int64_t{1} << 30;  // budget when num_kv_blocks == 0
  int num_threads = 0;                               // 0 → hardware concurrency
  Status Validate() const;
};

// Converts the weights and allocates the KV cache. Errors: invalid options, weights that do not
// match the config, a KV budget too small for one block.
StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(std::shared_ptr<const LoadedModel> model,
                                                    const CpuBackendOptions& options);

}  // namespace kiln
