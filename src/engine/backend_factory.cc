#include "engine/backend_factory.h"

#if defined(KILN_HAVE_CPU_BACKEND)
#include "backend/cpu/cpu_backend.h"
#endif
#if defined(KILN_WITH_CUDA) && defined(KILN_HAVE_CUDA_BACKEND) && \
    __has_include("backend/cuda/cuda_backend.h")
#include "backend/cuda/cuda_backend.h"
#define KILN_ENGINE_CUDA 1
#endif

namespace kiln {

StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const LoadedModel> model,
                                                 const EngineOptions& options) {
  if (options.device.device == "cpu") {
#if defined(KILN_HAVE_CPU_BACKEND)
    CpuBackendOptions cpu;
    cpu.block_size = options.cache.block_size;
    cpu.num_kv_blocks = options.cache.num_blocks;
    cpu.kv_cache_memory_bytes = options.cache.kv_cache_memory_bytes;
    cpu.num_threads = options.device.num_threads;
    return CreateCpuBackend(std::move(model), cpu);
#else
    return Status::Unimplemented("device \"cpu\": kiln was built without the CPU backend");
#endif
  } else {
#if defined(KILN_ENGINE_CUDA)
    CudaBackendOptions cuda;
    cuda.device_id = options.device.cuda_device;
    cuda.block_size = options.cache.block_size;
    cuda.num_kv_blocks = options.cache.num_blocks;
    cuda.gpu_memory_utilization = options.cache.gpu_memory_utilization;
    cuda.max_num_batched_tokens = options.scheduler.max_num_batched_tokens;
    cuda.max_num_seqs = options.scheduler.max_num_seqs;
    cuda.max_model_len = options.scheduler.max_model_len;
    cuda.enable_cuda_graphs = options.device.enable_cuda_graphs;
    cuda.dtype = options.model.dtype == "auto" ? "bfloat16" : options.model.dtype;
    return CreateCudaBackend(std::move(model), cuda);
#else
    return Status::Unimplemented("device \"cuda\": kiln was built without CUDA");
#endif
  }
}

}  // namespace kiln
