// GpuSampler: Backend::Sample on the GPU. Flattens SamplingRows into kernels::SampleRowParams
// (penalty id sets deduplicated on the host, only for rows with a non-neutral penalty), uploads
// every input in one pinned-buffer copy, runs kernels/sampling.h, and copies every output back in
// one copy. Semantics: exactly cpu::SampleLogitsRow (backend/cpu/cpu_sampler.h), including its
// InvalidArgument errors (ids outside the vocabulary, every token banned or masked).
//
// Thread-safety: one GpuSampler per backend, used by one thread. Sample() synchronizes `stream`.
#pragma once

#include <cuda_runtime.h>

#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_util.h"
#include "kiln/status.h"

namespace kiln::cuda {

class GpuSampler final {
 public:
  static constexpr int kMaxTopLogprobs = 64;

  // max_rows: most rows per Sample call; vocab_size: row width.
  Status Init(int max_rows, int vocab_size);

  // logits: device float32 [rows.size(), vocab_size]. Results in row order.
  Status Sample(const float* logits, std::span<const SamplingRow> rows,
                std::vector<SampleResult>* results, cudaStream_t stream);

 private:
  int max_rows_ = 0;
  int vocab_size_ = 0;
  DeviceBuffer workspace_;
  DeviceBuffer in_dev_;
  PinnedBuffer in_host_;
  DeviceBuffer out_dev_;
  PinnedBuffer out_host_;
};

}  // namespace kiln::cuda
