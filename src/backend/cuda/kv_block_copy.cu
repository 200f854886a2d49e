#include "backend/cuda/kv_block_copy.h"

namespace kiln::cuda {
namespace {

__global__ void KvBlockCopyKernel(char* const* halves, int num_halves, int64_t run_bytes,
                                  KvCopyBlockList blocks, char* staging, bool to_staging) {
  const int i = blockIdx.x;
  const int half = blockIdx.y;
  char* kv = halves[half] + static_cast<int64_t>(blocks.ids[i]) * run_bytes;
  char* st = staging + (static_cast<int64_t>(i) * num_halves + half) * run_bytes;
  const uint4* src = reinterpret_cast<const uint4*>(to_staging ? kv : st);
  uint4* dst = reinterpret_cast<uint4*>(to_staging ? st : kv);
  const int64_t n = run_bytes / 16;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dst[j] = src[j];
}

}  // namespace

cudaError_t LaunchKvBlockCopy(char* const* halves, int num_halves, int64_t run_bytes,
                              const KvCopyBlockList& blocks, char* staging, bool to_staging,
                              cudaStream_t stream) {
  if (blocks.count <= 0) return cudaSuccess;
  if (blocks.count > kMaxKvCopyBlocks || run_bytes % 16 != 0 || num_halves <= 0 ||
      num_halves > 65535) {
    return cudaErrorInvalidValue;
  }
  const dim3 grid(static_cast<unsigned>(blocks.count), static_cast<unsigned>(num_halves));
  KvBlockCopyKernel<<<grid, 256, 0, stream>>>(halves, num_halves, run_bytes, blocks, staging,
                                              to_staging);
  return cudaGetLastError();
}

}  // namespace kiln::cuda
