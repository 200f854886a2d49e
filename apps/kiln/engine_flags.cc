// The engine flags shared by serve / generate / bench; see flags.h.
#include "flags.h"

namespace kiln::cli {

void DeclareEngineFlags(Flags* f) {
  f->Value("model", "HF model directory (config.json + safetensors) or a .gguf file");
  f->Value("tokenizer", "tokenizer directory / tokenizer.json / .gguf (default: from --model)");
  f->Value("load-format", "auto | dummy (seeded random weights from config.json)");
  f->Value("dummy-seed", "seed of the dummy weights (--load-format dummy)");
  f->Value("dtype", "auto | float32 | bfloat16 | float16");
  f->Value(
      "quantization",
      "linear weights: auto (as stored) | none (dense) | fp8 (E4M3 weights + FP8 activations)");
  f->Value("quantization-scale", "fp8 weight scales: per-channel (default) | per-tensor");
  f->Value("kv-cache-dtype", "auto (model dtype) | bfloat16 | float32 | fp8 (E4M3)");
  f->Value("served-model-name", "model name reported by the API");
  f->Value("device", "cpu | cuda");
  f->Value("num-threads", "CPU backend threads (0: all cores)");
  f->Value("block-size", "tokens per KV block (default 16)");
  f->Value("num-kv-blocks", "KV blocks (0: derived from memory)");
  f->Value("kv-cache-memory", "CPU KV cache budget in bytes (default 1 GiB)");
  f->Value("gpu-memory-utilization", "fraction of GPU memory kiln may use (default 0.9)");
  f->Bool("enable-prefix-caching", "reuse KV of shared prompt prefixes (default on)");
  f->Value("cpu-offload-gb",
           "host-memory KV tier in GiB, exactly (pinned on CUDA; default 0: off, or a staging pool "
           "of at most 1 GiB for disk / Redis)");
  f->Value("disk-cache-dir",
           "writable directory of the disk KV tier (survives restarts; default off)");
  f->Value("disk-cache-gb", "size bound of the disk KV tier in GiB (default 16)");
  f->Value("redis-url",
           "redis://[[user]:password@]host[:port][/db]: KV tier shared by replicas (default off)");
  f->Value("redis-ttl", "seconds a KV block lives in Redis (default 3600)");
  f->Value("redis-timeout-ms", "slower Redis commands turn the tier off (default 200)");
  f->Value("kv-fetch-timeout-ms",
           "longest a request waits for a disk / Redis KV fetch before it runs without it "
           "(default 500)");
  f->Value("max-num-seqs", "running requests at once (default 256)");
  f->Value("max-num-batched-tokens", "tokens per engine step (default 8192)");
  f->Value("max-model-len", "context length limit (default: the model's)");
  f->Value("max-waiting-requests", "queue limit before 503 (default 100000)");
  f->Bool("enforce-eager", "disable CUDA graphs");
  f->Bool("async-scheduling",
          "launch step n+1 before reading step n's samples (default on; =false to wait)");
}

Status EngineOptionsFromFlags(const Flags& f, EngineOptions* o) {
  o->model.model_path = f.GetString("model");
  if (o->model.model_path.empty()) return Status::InvalidArgument("--model is required");
  o->model.tokenizer_path = f.GetString("tokenizer");
  o->model.load_format = f.GetString("load-format", o->model.load_format);
  o->model.dtype = f.GetString("dtype", o->model.dtype);
  o->model.quantization = f.GetString("quantization", o->model.quantization);
  o->model.quantization_scale = f.GetString("quantization-scale", o->model.quantization_scale);
  o->cache.kv_cache_dtype = f.GetString("kv-cache-dtype", o->cache.kv_cache_dtype);
  o->model.served_model_name = f.GetString("served-model-name");
  KILN_ASSIGN_OR_RETURN(int64_t seed, f.GetInt("dummy-seed", 0));
  o->model.dummy_seed = static_cast<uint64_t>(seed);
  o->device.device = f.GetString("device", o->device.device);
  KILN_ASSIGN_OR_RETURN(o->device.num_threads, f.GetInt32("num-threads", o->device.num_threads));
  o->device.enable_cuda_graphs = !f.GetBool("enforce-eager", false);
  KILN_ASSIGN_OR_RETURN(o->cache.block_size, f.GetInt32("block-size", o->cache.block_size));
  KILN_ASSIGN_OR_RETURN(o->cache.num_blocks, f.GetInt("num-kv-blocks", o->cache.num_blocks));
  KILN_ASSIGN_OR_RETURN(o->cache.kv_cache_memory_bytes,
                        f.GetInt("kv-cache-memory", o->cache.kv_cache_memory_bytes));
  KILN_ASSIGN_OR_RETURN(o->cache.gpu_memory_utilization,
                        f.GetDouble("gpu-memory-utilization", o->cache.gpu_memory_utilization));
  o->cache.enable_prefix_caching = f.GetBool("enable-prefix-caching", true);
  const double gib = static_cast<double>(int64_t{1} << 30);
  KILN_ASSIGN_OR_RETURN(double offload_gb, f.GetDouble("cpu-offload-gb", 0.0));
  if (!(offload_gb >= 0.0 && offload_gb < 1e6)) {
    return Status::InvalidArgument("--cpu-offload-gb must be in [0, 1e6)");
  }
  o->cache.cpu_offload_bytes = static_cast<int64_t>(offload_gb * gib);
  o->cache.disk_cache_dir = f.GetString("disk-cache-dir");
  KILN_ASSIGN_OR_RETURN(
      double disk_gb,
      f.GetDouble("disk-cache-gb", static_cast<double>(o->cache.disk_cache_bytes) / gib));
  if (!(disk_gb > 0.0 && disk_gb < 1e6)) {
    return Status::InvalidArgument("--disk-cache-gb must be in (0, 1e6)");
  }
  o->cache.disk_cache_bytes = static_cast<int64_t>(disk_gb * gib);
  o->cache.redis_url = f.GetString("redis-url");
  KILN_ASSIGN_OR_RETURN(o->cache.redis_ttl_s, f.GetInt("redis-ttl", o->cache.redis_ttl_s));
  KILN_ASSIGN_OR_RETURN(int64_t redis_timeout,
                        f.GetInt("redis-timeout-ms", o->cache.redis_timeout_ms));
  if (redis_timeout <= 0 || redis_timeout > 600000) {
    return Status::InvalidArgument("--redis-timeout-ms must be in [1, 600000]");
  }
  o->cache.redis_timeout_ms = static_cast<int>(redis_timeout);
  KILN_ASSIGN_OR_RETURN(int64_t fetch_timeout,
                        f.GetInt("kv-fetch-timeout-ms", o->cache.kv_fetch_timeout_ms));
  if (fetch_timeout < 0 || fetch_timeout > 600000) {
    return Status::InvalidArgument("--kv-fetch-timeout-ms must be in [0, 600000]");
  }
  o->cache.kv_fetch_timeout_ms = static_cast<int>(fetch_timeout);
  KILN_ASSIGN_OR_RETURN(o->scheduler.max_num_seqs,
                        f.GetInt32("max-num-seqs", o->scheduler.max_num_seqs));
  KILN_ASSIGN_OR_RETURN(o->scheduler.max_num_batched_tokens,
                        f.GetInt32("max-num-batched-tokens", o->scheduler.max_num_batched_tokens));
  KILN_ASSIGN_OR_RETURN(o->scheduler.max_model_len,
                        f.GetInt32("max-model-len", o->scheduler.max_model_len));
  KILN_ASSIGN_OR_RETURN(o->scheduler.max_waiting_requests,
                        f.GetInt32("max-waiting-requests", o->scheduler.max_waiting_requests));
  o->scheduler.async_scheduling = f.GetBool("async-scheduling", true);
  return o->Validate();
}

}  // namespace kiln::cli
