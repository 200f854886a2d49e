// EngineOptions: everything needed to create an Engine, composed of per-component option structs
// with documented defaults. Flags are parsed into these only in apps/; core code never reads the
// environment. Validate() returns InvalidArgument naming the bad field.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/status.h"

namespace kiln {

struct ModelOptions {
  std::string model_path;       // HF directory (config.json + safetensors) or a .gguf file
  std::string tokenizer_path;   // empty → from model_path when it has one
  std::string load_format = "auto";  // "auto" | "dummy" (seeded random weights from config.json)
  uint64_t dummy_seed = 0;
  std::string dtype = "auto";   // "auto" | "float32" | "bfloat16" | "float16" (compute/storage)
  // Linear-layer weight quantization, independent of dtype: "auto" (as the checkpoint stores them:
  // dense, or its quantization_config), "none" (dense in dtype; a quantized checkpoint is
  // dequantized), "fp8" (E4M3 weights quantized on the fly from a dense checkpoint, dynamic
  // per-token FP8 activations). quantization_scale: "per-channel" (default) | "per-tensor".
  std::string quantization = "auto";
  std::string quantization_scale = "per-channel";
  std::string served_model_name;  // empty → derived from model_path
  Status Validate() const;
};

struct CacheOptions {
  int block_size = 16;              // tokens per KV block
  int64_t num_blocks = 0;           // 0 → derived (CPU: from kv_cache_memory_bytes; CUDA: from
                                    //   gpu_memory_utilization after profiling)
  int64_t kv_cache_memory_bytes = int64_t{1} << 30;  // CPU backend KV budget
  double gpu_memory_utilization = 0.90;
  bool enable_prefix_caching = true;
  // Element type of the KV cache, separate from the activations': "auto" (the model dtype) |
  // "bfloat16" | "float32" | "fp8" (E4M3 with per-tensor scales; twice the tokens of bf16).
  std::string kv_cache_dtype = "auto";
  // Tiered prefix cache (each tier needs enable_prefix_caching). Host memory tier: bytes of block
  // records (pinned on CUDA), honoured exactly; 0 → off (a staging pool of at most 1 GiB is still
  // made for disk / Redis: engine/kv_tier_setup.h).
  int64_t cpu_offload_bytes = 0;
  std::string disk_cache_dir;      // disk tier directory; empty → off
  int64_t disk_cache_bytes = int64_t{16} << 30;  // disk tier size bound
  std::string redis_url;           // redis://[[user]:password@]host[:port][/db]; empty → off
  int64_t redis_ttl_s = 3600;      // expiry of each record in Redis
  int64_t redis_max_bytes = int64_t{4} << 30;  // written per TTL window by this replica
  int redis_timeout_ms = 200;      // slower commands turn the Redis tier off (with a warning)
  // A request waits at most this long for a disk / Redis fetch of its prefix, then runs with what
  // the device and host tiers hold (the fetch still lands in the host tier); 0 = never waits.
  int kv_fetch_timeout_ms = 500;
  Status Validate() const;
};

struct SchedulerOptions {
  int max_num_seqs = 256;              // running requests at once
  int max_num_batched_tokens = 8192;   // tokens per step (prefill chunks + decodes)
  int max_model_len = 0;               // 0 → the model's max_position_embeddings
  int max_waiting_requests = 100000;   // Submit() past this → ResourceExhausted (HTTP 503)
  bool enable_chunked_prefill = true;
  // Launch step n+1 before step n's samples are read (host work overlaps the device); off → each
  // step waits for its samples before the next one is scheduled.
  bool async_scheduling = true;
  Status Validate() const;
};

struct DeviceOptions {
  std::string device = "cpu";  // "cpu" | "cuda"
  int num_threads = 0;         // CPU backend threads; 0 → hardware concurrency
  int cuda_device = 0;
  bool enable_cuda_graphs = true;
  Status Validate() const;
};

struct EngineOptions {
  ModelOptions model;
  CacheOptions cache;
  SchedulerOptions scheduler;
  DeviceOptions device;
  Status Validate() const;
};

}  // namespace kiln
