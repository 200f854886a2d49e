// CudaBackend: the Backend (backend/backend.h) that runs a Llama-family decoder on one NVIDIA GPU.
// It owns the weights on the device (bf16, or float32 in the exact-parity mode; q/k/v fused into
// one [q_size + 2 * kv_size, hidden] matrix and gate/up into one [2 * intermediate, hidden]
// matrix), the paged KV cache (per layer K and V, [num_kv_blocks * block_size, num_kv_heads,
// head_dim]), cuBLASLt GEMM plans (autotuned per shape on first use), activation buffers sized
// for max_num_batched_tokens, and CUDA graphs of decode-only steps captured lazily per (batch-size
// bucket, context band of 512·2^k tokens); padded rows write no KV. Per-step metadata goes up in
// one async copy from one of two pinned buffers; Forward and SampleAsync do not synchronize
// (WaitSample waits on the sampler's event only, so a Forward queued after SampleAsync keeps
// running; GetLogits and GetHidden synchronize the stream). Deferred tokens
// (ForwardBatch::deferred_tokens) are filled on the device from the last SampleAsync's ids
// (deferred_tokens.h). Sampling runs on the GPU (gpu_sampler.h, kernels/sampling.h).
//
// Not responsible for: scheduling, block allocation (the engine's KV manager hands out block ids
// in [0, num_kv_blocks())), tokenization.
//
// Thread-safety: like every Backend, used by one thread at a time (the engine thread). All device
// work is issued on the backend's own stream.
//
// Memory planning: when num_kv_blocks == 0, the backend uploads the weights, runs one profiling
// forward at max_num_batched_tokens tokens, measures the peak, and gives the KV cache
// gpu_memory_utilization * total_memory - (weights + activations + workspace).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "kiln/status.h"
#include "model/weights.h"

namespace kiln {

struct CudaBackendOptions {
  int device_id = 0;
  int block_size = 16;                  // tokens per KV block
  int64_t num_kv_blocks = 0;            // 0 → derived from gpu_memory_utilization
  double gpu_memory_utilization = 0.90; // fraction of the device memory kiln may use in total
  int max_num_batched_tokens = 8192;    // most token rows in one Forward
  int max_num_seqs = 256;               // most sequences in one Forward (and logits rows)
  int max_model_len = 0;                // 0 → config.max_position_embeddings; bounds block tables
  bool enable_cuda_graphs = true;       // capture decode steps per batch-size bucket
  // "bfloat16": bf16 weights/activations/KV, fp32 accumulation (the fast path).
  // "float32": float32 everywhere with TF32 off (exact-parity mode for the references).
  std::string dtype = "bfloat16";
  // Linear-layer weights (ModelOptions::quantization): "auto" (as the checkpoint stores them),
  // "none" (dense), "fp8" (E4M3 weights, per-token dynamic FP8 activations; quantization_scale
  // "per-channel" or "per-tensor"). lm_head and the embedding stay in dtype.
  std::string quantization = "auto";
  std::string quantization_scale = "per-channel";
  // Benchmarks: bracket the device work of every Forward and SampleAsync with timing events so
  // that ReadDeviceTimeline can report how long the GPU sat idle between them.
  bool record_device_timeline = false;
  Status Validate() const;
};

// Device time of the work a CUDA backend queued since the last reset: `busy_s` inside Forward /
// SampleAsync work (first upload to last kernel or copy), `idle_s` in the gaps between
// consecutive pieces (the GPU waiting for the host).
struct DeviceTimeline {
  int64_t num_pieces = 0;
  double busy_s = 0;
  double idle_s = 0;
};

// Waits for the backend's queued work and returns its timeline (then resets it when `reset`).
// FailedPrecondition unless `backend` is a CUDA backend created with record_device_timeline.
StatusOr<DeviceTimeline> ReadDeviceTimeline(Backend* backend, bool reset);

// Creates the backend: selects the device, uploads (or, for dummy weights, generates on the
// device) the weights, plans memory and allocates the KV cache. Errors: no CUDA device, out of
// memory, unsupported architecture/dtype.
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(std::shared_ptr<const LoadedModel> model,
                                                     const CudaBackendOptions& options);

// True when a CUDA device is usable from this process (for tests that GTEST_SKIP otherwise).
bool CudaDeviceAvailable();

}  // namespace kiln
