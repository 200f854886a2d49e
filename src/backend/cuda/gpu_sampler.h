// GpuSampler: Backend::Sample on the GPU. Flattens SamplingRows into kernels::SampleRowParams
// (penalty id sets deduplicated on the host, only for rows with a non-neutral penalty), uploads
// every input in one pinned-buffer copy, runs kernels/sampling.h, and copies every output back in
// one copy. Semantics: exactly cpu::SampleLogitsRow (backend/cpu/cpu_sampler.h), including its
// InvalidArgument errors (ids outside the vocabulary, every token banned or masked).
//
// Launch() queues the work on `stream` and returns; Wait() blocks on an event recorded after the
// results' copy (not on the stream, so work queued after Launch, e.g. the next forward pass, keeps
// running). device_token_ids() holds the last Launch's sampled ids on the device (what deferred
// tokens of the next forward read), valid until the next Launch.
//
// Thread-safety: one GpuSampler per backend, used by one thread. Sample() = Launch + Wait.
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

  GpuSampler() = default;
  ~GpuSampler();
  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  // max_rows: most rows per Sample call; vocab_size: row width.
  Status Init(int max_rows, int vocab_size);

  // logits: device float32 [rows.size(), vocab_size]. Results in row order.
  Status Sample(const float* logits, std::span<const SamplingRow> rows,
                std::vector<SampleResult>* results, cudaStream_t stream);
  // Queues sampling of `rows` (read before it returns). FailedPrecondition while the previous
  // Launch was not waited for.
  // `before_upload`, when set, is recorded on `stream` just before the first device work.
  Status Launch(const float* logits, std::span<const SamplingRow> rows, cudaStream_t stream,
                cudaEvent_t before_upload = nullptr);
  bool Ready() const;
  // The last Launch's results (waits for them).
  Status Wait(std::vector<SampleResult>* results);
  const int32_t* device_token_ids() const { return out_dev_.as<int32_t>(); }
  int last_num_rows() const { return num_rows_; }

 private:
  int max_rows_ = 0;
  int vocab_size_ = 0;
  DeviceBuffer workspace_;
  DeviceBuffer in_dev_;
  PinnedBuffer in_host_;
  DeviceBuffer out_dev_;
  PinnedBuffer out_host_;
  cudaEvent_t done_ = nullptr;  // recorded after the last Launch's output copy
  bool pending_ = false;        // Launch not waited for yet
  // The last Launch, for Wait.
  int num_rows_ = 0;
  int max_top_stride_ = 1;
  size_t o_lp_ = 0, o_top_ids_ = 0, o_top_lp_ = 0, o_req_ = 0;
  std::vector<int> num_top_;  // per row: num_top_logprobs
  std::vector<int> requested_begin_, requested_end_;
  std::vector<int32_t> requested_;
};

}  // namespace kiln::cuda
