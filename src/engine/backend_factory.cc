#include "engine/backend_factory.h"

#include <string>

#include "backend/cpu/cpu_backend.h"
#if defined(KILN_WITH_CUDA)
#include "backend/cuda/cuda_backend.h"
#endif

namespace kiln {

StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const LoadedModel> model,
                                                 const EngineOptions& options) {
  if (options.device.device == "cpu") {
    CpuBackendOptions cpu;
    cpu.block_size = options.cache.block_size;
    cpu.num_kv_blocks = options.cache.num_blocks;
    cpu.kv_cache_memory_bytes = options.cache.kv_cache_memory_bytes;
    cpu.num_threads = options.device.num_threads;
    cpu.quantization = options.model.quantization;
    cpu.quantization_scale = options.model.quantization_scale;
    cpu.kv_cache_dtype = options.cache.kv_cache_dtype;
    return CreateCpuBackend(std::move(model), cpu);
  }
  // The CUDA KV cache holds the compute dtype; an FP8 (or any other) KV element type is refused
  // rather than silently ignored.
  const std::string compute = options.model.dtype == "auto" ? "bfloat16" : options.model.dtype;
  if (options.cache.kv_cache_dtype != "auto" && options.cache.kv_cache_dtype != compute) {
    return Status::InvalidArgument("kv_cache_dtype \"" + options.cache.kv_cache_dtype +
                                   "\" is not available on the CUDA backend (its KV cache is in the "
                                   "compute dtype, " + compute + "; the FP8 KV cache runs on the CPU "
                                   "backend only so far)");
  }
#if defined(KILN_WITH_CUDA)
  CudaBackendOptions cuda;
  cuda.device_id = options.device.cuda_device;
  cuda.block_size = options.cache.block_size;
  cuda.num_kv_blocks = options.cache.num_blocks;
  cuda.gpu_memory_utilization = options.cache.gpu_memory_utilization;
  cuda.max_num_batched_tokens = options.scheduler.max_num_batched_tokens;
  cuda.max_num_seqs = options.scheduler.max_num_seqs;
  cuda.max_model_len = options.scheduler.max_model_len;
  cuda.enable_cuda_graphs = options.device.enable_cuda_graphs;
  cuda.dtype = compute;
  cuda.quantization = options.model.quantization;
  cuda.quantization_scale = options.model.quantization_scale;
  return CreateCudaBackend(std::move(model), cuda);
#else
  return Status::Unimplemented("device \"cuda\": kiln was built without CUDA");
#endif
}

}  // namespace kiln
