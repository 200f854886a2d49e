// ModelRunner: turns a SchedulerOutput into the ForwardBatch a backend executes (token ids,
// positions, cu_seqlens_q, seq_lens, block tables, slot_mapping, logits / hidden rows), and
// records, per scheduled request, which logits row and hidden rows belong to it.
//
// Rows: a request gets a logits row when this step computes its last pending token (the chunk
// completes its prompt, or it decodes) and it is not an embedding request; an embedding request
// gets hidden rows for every computed row (return_all_hidden) or only its last prompt row. A
// request asking for prompt logprobs also gets a logits row for every computed prompt row p whose
// next token p + 1 is a prompt token not yet asked for (scheduler.h LogitsRowsFor).
//
// A request whose last token is a placeholder (RequestState::has_pending_token) gets a deferred
// token entry for it: the backend fills it from the previous step's sample.
//
// All vectors are reused across steps: no allocation in steady state. Engine thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/forward_batch.h"
#include "engine/scheduler.h"

namespace kiln {

struct ScheduledRows {
  int logits_row = -1;   // index into batch.logits_indices, -1 when none
  // Prompt-logprob rows (SamplingParams::prompt_logprobs): logits rows [prompt_row_begin,
  // prompt_row_begin + prompt_row_count), before logits_row; row k gives the logprobs of prompt
  // token prompt_position_begin + k.
  int prompt_row_begin = 0;
  int prompt_row_count = 0;
  int prompt_position_begin = 0;
  int hidden_begin = 0;  // first index into batch.hidden_indices
  int hidden_count = 0;
};

class ModelRunner final {
 public:
  explicit ModelRunner(int block_size) : block_size_(block_size) {}
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // Fills batch() and rows() for `out` (rows()[i] belongs to out.scheduled[i]).
  void Build(const SchedulerOutput& out);
  const ForwardBatch& batch() const { return batch_; }
  const std::vector<ScheduledRows>& rows() const { return rows_; }

 private:
  int block_size_;
  ForwardBatch batch_;
  std::vector<ScheduledRows> rows_;
};

}  // namespace kiln
