// DecodeGraphs: CUDA graphs of decode-only steps, captured lazily per (batch-size bucket, context
// band of 512·2^k tokens). A decode step of n sequences runs the graph of the smallest bucket
// >= n, padded (StepMetadata pads the rows). Inside a graph the attention grid must not depend on
// the step, so the run's context bound is fixed to the band's top: the KV split count then
// matches what an eager step of that band would choose.
//
// Thread-safety: the backend's thread only.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <map>
#include <utility>

#include "backend/cuda/step_metadata.h"
#include "kiln/status.h"

namespace kiln::cuda {

class DecodeGraphs final {
 public:
  DecodeGraphs() = default;
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // The bucket a decode step of `num_seqs` sequences runs in (0 → none fits: run eagerly).
  static int Bucket(int num_seqs, int max_seqs, int max_tokens);

  // Runs `run_model` for `shape` through the graph of its (bucket, band): the first time eagerly
  // (warming cuBLASLt plans), then captured; later steps replay the graph. `max_context` bounds
  // the band (max_blocks_per_seq * block_size).
  Status Run(const RunShape& shape, int max_context, cudaStream_t stream,
             const std::function<Status(const RunShape&)>& run_model);

 private:
  std::map<std::pair<int, int>, cudaGraphExec_t> graphs_;
};

}  // namespace kiln::cuda
