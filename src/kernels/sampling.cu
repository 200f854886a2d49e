// Launcher of GPU sampling; the contract is in sampling.h, the kernels in sampling.cuh.
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/sampling.cuh"

namespace kiln::kernels {
namespace {

using namespace sampling_detail;

struct WorkspaceLayout {
  size_t lse, probs, ids_in, sorted_probs, sorted_ids, offsets, cub_temp, cub_bytes, total;
};

size_t Align(size_t x) { return (x + 255) & ~size_t{255}; }

WorkspaceLayout Layout(int chunk_rows, int vocab) {
  WorkspaceLayout l{};
  const size_t elems = static_cast<size_t>(chunk_rows) * vocab;
  size_t off = 0;
  l.lse = off;
  off += Align(sizeof(float) * chunk_rows);
  l.probs = off;
  off += Align(sizeof(float) * elems);
  l.ids_in = off;
  off += Align(sizeof(int32_t) * elems);
  l.sorted_probs = off;
  off += Align(sizeof(float) * elems);
  l.sorted_ids = off;
  off += Align(sizeof(int32_t) * elems);
  l.offsets = off;
  off += Align(sizeof(int32_t) * (chunk_rows + 1));
  l.cub_bytes = 0;
  cub::DeviceSegmentedRadixSort::SortPairsDescending(
      static_cast<void*>(nullptr), l.cub_bytes, static_cast<const float*>(nullptr),
      static_cast<float*>(nullptr), static_cast<const int32_t*>(nullptr),
      static_cast<int32_t*>(nullptr), static_cast<int>(elems), chunk_rows,
      static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(nullptr));
  l.cub_temp = off;
  off += Align(l.cub_bytes);
  l.total = off;
  return l;
}

}  // namespace

size_t SampleWorkspaceBytes(int chunk_rows, int vocab_size) {
  return Layout(chunk_rows, vocab_size).total;
}

cudaError_t LaunchSample(const SampleInputs& in, const SampleOutputs& out, void* workspace,
                         int chunk_rows, cudaStream_t stream) {
  if (in.num_rows <= 0) return cudaSuccess;
  if (chunk_rows <= 0 || in.vocab_size <= 0) return cudaErrorInvalidValue;
  const WorkspaceLayout l = Layout(chunk_rows, in.vocab_size);
  char* ws = static_cast<char*>(workspace);
  float* lse = reinterpret_cast<float*>(ws + l.lse);
  float* probs = reinterpret_cast<float*>(ws + l.probs);
  int32_t* ids_in = reinterpret_cast<int32_t*>(ws + l.ids_in);
  float* sorted_probs = reinterpret_cast<float*>(ws + l.sorted_probs);
  int32_t* sorted_ids = reinterpret_cast<int32_t*>(ws + l.sorted_ids);
  int32_t* offsets = reinterpret_cast<int32_t*>(ws + l.offsets);
  if (in.any_random) {
    FillSortInputsKernel<<<1024, 256, 0, stream>>>(ids_in, offsets, chunk_rows, in.vocab_size);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  for (int row0 = 0; row0 < in.num_rows; row0 += chunk_rows) {
    const int rows = min(chunk_rows, in.num_rows - row0);
    ProcessKernel<<<rows, kThreads, 0, stream>>>(in, out, row0, lse, probs);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    if (in.any_random) {
      size_t bytes = l.cub_bytes;
      cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
          ws + l.cub_temp, bytes, probs, sorted_probs, ids_in, sorted_ids,
          rows * in.vocab_size, rows, offsets, offsets + 1, 0, 32, stream);
      if (e != cudaSuccess) return e;
      SelectKernel<<<rows, kThreads, 0, stream>>>(in, out, row0, sorted_probs, sorted_ids);
      if (e = cudaGetLastError(); e != cudaSuccess) return e;
    }
    if (in.any_logprobs) {
      LogprobsKernel<<<rows, kThreads, 0, stream>>>(in, out, row0, lse);
      if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    }
  }
  return cudaSuccess;
}

}  // namespace kiln::kernels
