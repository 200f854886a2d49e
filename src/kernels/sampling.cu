// Launcher of GPU sampling; the contract is in sampling.h, the kernels in sampling.cuh.
#include "kernels/sampling.cuh"

namespace kiln::kernels {
namespace {

using namespace sampling_detail;

struct WorkspaceLayout {
  size_t lse, probs, total;
};

size_t Align(size_t x) { return (x + 255) & ~size_t{255}; }

WorkspaceLayout Layout(int chunk_rows, int vocab) {
  WorkspaceLayout l{};
  size_t off = 0;
  l.lse = off;
  off += Align(sizeof(float) * chunk_rows);
  l.probs = off;
  off += Align(sizeof(float) * static_cast<size_t>(chunk_rows) * vocab);
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
  for (int row0 = 0; row0 < in.num_rows; row0 += chunk_rows) {
    const int rows = min(chunk_rows, in.num_rows - row0);
    ProcessKernel<<<rows, kThreads, 0, stream>>>(in, out, row0, lse, probs);
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    if (in.any_random) {
      SelectKernel<<<rows, kThreads, 0, stream>>>(in, out, row0, probs);
      if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    }
    if (in.any_logprobs) {
      LogprobsKernel<<<rows, kThreads, 0, stream>>>(in, out, row0, lse);
      if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
    }
  }
  return cudaSuccess;
}

}  // namespace kiln::kernels
