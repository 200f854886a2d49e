// Programmatic dependent launch (PDL, sm_90+): lets a kernel's blocks start while the previous
// kernel of the stream is still running, so launch latency and the ramp-up/drain of short kernels
// overlap instead of adding up (decode runs ~250 kernels of 2–100 µs per step).
//
// Contract of every kernel launched with LaunchPdl:
//   - it calls PdlLaunchDependents(): from then on the next kernel's blocks may be scheduled onto
//     free SM slots (a hint; implied when the kernel exits). Short kernels call it first thing;
//     the GEMV only after its main loop (see gemv.cuh for why);
//   - before PdlWait() it reads nothing that an earlier kernel of the stream writes (weights and
//     other data fixed for the whole run are fine) and writes no global memory at all;
//   - every thread calls PdlWait() before it exits, early-exit paths included. PdlWait returns
//     once the previous kernel has finished and its writes are visible; since that kernel did the
//     same, completion of any kernel implies completion of all earlier ones (transitivity), which
//     a normally launched kernel or copy that follows relies on.
// Both device calls are no-ops for a kernel launched without the attribute (the <<<>>> syntax),
// so the same kernel may be launched either way. Inside stream capture the dependency becomes a
// programmatic edge of the CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace kiln::kernels {

__device__ __forceinline__ void PdlLaunchDependents() {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

__device__ __forceinline__ void PdlWait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

// kernel<<<grid, block, smem_bytes, stream>>>(args...) with programmatic stream serialization
// allowed; returns the launch error.
template <typename... Params, typename... Args>
cudaError_t LaunchPdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes,
                      cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace kiln::kernels
