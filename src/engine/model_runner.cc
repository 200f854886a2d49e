#include "engine/model_runner.h"

#include <algorithm>

#include "common/check.h"

namespace kiln {

void ModelRunner::Build(const SchedulerOutput& out) {
  ForwardBatch& b = batch_;
  b.Clear();
  rows_.clear();
  const size_t num_seqs = out.scheduled.size();
  int max_blocks = 0;
  for (const ScheduledRequest& s : out.scheduled) {
    max_blocks = std::max(max_blocks, static_cast<int>(s.request->kv.block_table.size()));
  }
  b.max_blocks_per_seq = max_blocks;
  b.block_tables.resize(num_seqs * static_cast<size_t>(max_blocks));
  b.cu_seqlens_q.push_back(0);
  bool decode_only = num_seqs > 0;
  const int bs = block_size_;
  for (size_t i = 0; i < num_seqs; ++i) {
    const ScheduledRequest& s = out.scheduled[i];
    const RequestState& r = *s.request;
    const int start = r.num_computed_tokens;
    const int end = start + s.num_tokens;
    KILN_DCHECK(end <= r.num_tokens());
    const int32_t* table = r.kv.block_table.data();
    KILN_DCHECK(static_cast<int>(r.kv.block_table.size()) * bs >= end);
    auto row = b.block_tables.begin() + static_cast<ptrdiff_t>(i) * max_blocks;
    row = std::copy(r.kv.block_table.begin(), r.kv.block_table.end(), row);
    std::fill(row, b.block_tables.begin() + static_cast<ptrdiff_t>(i + 1) * max_blocks, -1);
    const int row0 = b.num_tokens();
    b.token_ids.insert(b.token_ids.end(), r.token_ids.begin() + start, r.token_ids.begin() + end);
    if (r.has_pending_token() && end == r.num_tokens()) {  // its last token is still being sampled
      const int32_t row = row0 + (end - 1 - start);
      b.token_ids[static_cast<size_t>(row)] = 0;
      b.deferred_tokens.push_back({row, r.pending_sample_row});
    }
    for (int pos = start; pos < end; ++pos) {
      b.positions.push_back(pos);
      b.slot_mapping.push_back(int64_t{table[pos / bs]} * bs + pos % bs);
    }
    b.cu_seqlens_q.push_back(row0 + s.num_tokens);
    b.seq_lens.push_back(end);
    if (s.num_tokens != 1) decode_only = false;

    ScheduledRows rows;
    const PromptLogprobSpan prompt_rows = PromptLogprobRows(r, start, s.num_tokens);
    rows.prompt_row_begin = static_cast<int>(b.logits_indices.size());
    rows.prompt_position_begin = prompt_rows.first;
    rows.prompt_row_count = prompt_rows.count;
    for (int q = prompt_rows.first; q < prompt_rows.first + prompt_rows.count; ++q) {
      b.logits_indices.push_back(row0 + (q - 1 - start));
    }
    const bool completes = end == r.num_tokens();
    if (r.kind == RequestKind::kEmbed) {
      rows.hidden_begin = static_cast<int>(b.hidden_indices.size());
      if (r.return_all_hidden) {
        for (int t = 0; t < s.num_tokens; ++t) b.hidden_indices.push_back(row0 + t);
        rows.hidden_count = s.num_tokens;
      } else if (completes) {
        b.hidden_indices.push_back(row0 + s.num_tokens - 1);
        rows.hidden_count = 1;
      }
    }
    if (SamplesAfter(r, start, s.num_tokens)) {
      rows.logits_row = static_cast<int>(b.logits_indices.size());
      b.logits_indices.push_back(row0 + s.num_tokens - 1);
    }
    rows_.push_back(rows);
  }
  b.is_decode_only = decode_only;
}

}  // namespace kiln
