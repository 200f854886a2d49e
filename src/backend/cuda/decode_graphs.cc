#include "backend/cuda/decode_graphs.h"

#include <algorithm>

#include "backend/cuda/cuda_util.h"

namespace kiln::cuda {
namespace {

// Decode batch sizes with a captured CUDA graph. 1 – 3 each have one: those products stream
// through the split-row GEMV (Gemm::kDefaultGemvMaxRows), a 4th padded row would send them to
// cuBLASLt.
constexpr int kGraphBuckets[] = {1,  2,  3,  4,  8,  16,  24,  32,  40,  48,  56,  64,
                                 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512};

}  // namespace

DecodeGraphs::~DecodeGraphs() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
}

int DecodeGraphs::Bucket(int num_seqs, int max_seqs, int max_tokens) {
  for (int b : kGraphBuckets) {
    if (b >= num_seqs && b <= max_seqs && b <= max_tokens) return b;
  }
  return 0;
}

Status DecodeGraphs::Run(const RunShape& shape, int max_context, cudaStream_t stream,
                         const std::function<Status(const RunShape&)>& run_model) {
  int band = 512;
  while (band < shape.max_seq_len) band *= 2;
  band = std::min(band, max_context);
  RunShape fixed = shape;
  fixed.max_seq_len = std::max(band, shape.max_seq_len);
  fixed.max_seqlen_q = 1;
  const std::pair<int, int> key(shape.num_seqs, fixed.max_seq_len);
  auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    KILN_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, stream));
    return Status::Ok();
  }
  // First time at this size: run eagerly (warms cuBLASLt plans), then capture for next time.
  KILN_RETURN_IF_ERROR(run_model(fixed));
  cudaGraph_t graph = nullptr;
  KILN_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const Status run = run_model(fixed);
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  KILN_RETURN_IF_ERROR(run.WithContext("capturing decode graph"));
  KILN_CUDA_RETURN_IF_ERROR(end);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  KILN_CUDA_RETURN_IF_ERROR(inst);
  graphs_.emplace(key, exec);
  return Status::Ok();
}

}  // namespace kiln::cuda
