// StepMetadata: the per-step arrays of a ForwardBatch (token ids, positions, slot mapping,
// cu_seqlens_q, seq_lens, block tables, logits / hidden rows, deferred tokens) packed back to back
// into one of two pinned host buffers and uploaded with one async copy to one device buffer, and
// the RunShape (host-side sizes of the step) the op implementations read. A decode step may be
// padded to a CUDA-graph bucket: padding rows are 1-token sequences at position 0 over block 0
// with slot -1 (no KV write). The layout depends only on the counts, so a graph bucket always gets
// the same offsets (its graph reads the device buffer at fixed addresses).
//
// Thread-safety: the backend's thread only. Upload waits (on an event) only for the upload that
// last used the same pinned buffer, two steps back.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/cuda_util.h"
#include "backend/forward_batch.h"
#include "kiln/status.h"

namespace kiln::cuda {

// Byte offsets of the per-step arrays in the metadata buffers. deferred (last, so that a graph's
// offsets do not depend on it): [num_deferred, 2] int32 pairs (token row, sample row).
struct MetaLayout {
  size_t slot_mapping = 0, token_ids = 0, positions = 0, cu_seqlens_q = 0, seq_lens = 0,
         logits_indices = 0, hidden_indices = 0, block_tables = 0, deferred = 0, total = 0;
};

MetaLayout PackLayout(int num_tokens, int num_seqs, int num_logits, int num_hidden,
                      int blocks_per_seq, int num_deferred = 0);

// The host-side shape of one model run (fixed inside a captured graph).
struct RunShape {
  int num_tokens = 0;
  int num_seqs = 0;
  int num_logits = 0;
  int num_hidden = 0;
  int max_seqlen_q = 0;
  int max_seq_len = 0;
  int blocks_per_seq = 0;  // block-table row stride
  // logits_indices == [0, num_tokens): the lm_head reads the normed rows in place (decode).
  bool logits_identity = false;
  MetaLayout meta;
};

class StepMetadata final {
 public:
  StepMetadata() = default;
  ~StepMetadata();
  StepMetadata(const StepMetadata&) = delete;
  StepMetadata& operator=(const StepMetadata&) = delete;

  // Buffers for steps of at most these counts (graph-padded decode steps are smaller).
  Status Init(int max_tokens, int max_seqs, int max_logits, int max_blocks_per_seq);

  // Packs `batch` into the next pinned buffer (padded to `padded_seqs` decode rows when >
  // num_seqs; block tables then use the stride `padded_stride`) and fills `shape`.
  Status Pack(const ForwardBatch& batch, int padded_seqs, int padded_stride, RunShape* shape);
  // Queues the upload of what Pack packed on `stream`.
  Status Upload(const RunShape& shape, cudaStream_t stream);

  template <typename U>
  U* at(size_t offset) const {
    return reinterpret_cast<U*>(static_cast<char*>(device_.get()) + offset);
  }

 private:
  DeviceBuffer device_;
  PinnedBuffer host_[2];
  cudaEvent_t done_[2] = {nullptr, nullptr};
  int cur_ = 0;
};

}  // namespace kiln::cuda
