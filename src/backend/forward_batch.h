// ForwardBatch: the per-step contract between the engine and a backend (CPU or CUDA). The engine's
// ModelRunner builds one per step from the SchedulerOutput; a backend executes the whole model on
// it, writing K/V of the new tokens into the paged cache and producing logits (and optionally final
// hidden states) for the rows named in logits_indices / hidden_indices.
//
// Note on layout in the design: DESIGN.md lists forward_batch.h under src/engine/, but the backend
// layer sits below the engine and must not include it, so the contract lives here (src/backend/).
//
// Token layout: the new tokens of all sequences, concatenated sequence by sequence. Sequence i
// owns rows [cu_seqlens_q[i], cu_seqlens_q[i+1]); its new tokens sit at positions
// seq_lens[i] - q_len_i ... seq_lens[i] - 1 (everything before them is already in the KV cache,
// computed in earlier steps or served from the prefix cache).
//
// Paged KV: physical slot s = block_id * block_size + offset. block_tables is row-major
// [num_seqs, max_blocks_per_seq] (unused entries -1); slot_mapping[t] is where token row t's K/V
// goes. Attention for a new token at position p sees positions 0..p of its own sequence (causal).
//
// Deferred tokens (async scheduling): an entry {token_row, sample_row} says "token row token_row
// takes the id sampled for logits row sample_row by the backend's most recent SampleAsync", so
// the engine can launch step n+1 before it has read step n's samples. token_ids[token_row] is a
// placeholder (0) then. Entries are sorted by token_row, each row at most once.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln {

struct DeferredToken {
  int32_t token_row = 0;   // row of ForwardBatch::token_ids to fill
  int32_t sample_row = 0;  // logits row of the previous step's SampleAsync
};

struct ForwardBatch {
  int num_tokens() const { return static_cast<int>(token_ids.size()); }
  int num_seqs() const { return static_cast<int>(seq_lens.size()); }

  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens]
  std::vector<int32_t> cu_seqlens_q;  // [num_seqs + 1], cu_seqlens_q[0] = 0
  std::vector<int32_t> seq_lens;      // [num_seqs], context length after this step's tokens
  int max_blocks_per_seq = 0;
  std::vector<int32_t> block_tables;  // [num_seqs * max_blocks_per_seq]
  std::vector<int64_t> slot_mapping;  // [num_tokens]
  std::vector<int32_t> logits_indices;  // token rows whose logits are needed (ascending)
  std::vector<int32_t> hidden_indices;  // token rows whose final (normed) hidden states are needed
  bool is_decode_only = false;          // every sequence has exactly one new token
  std::vector<DeferredToken> deferred_tokens;  // token ids still being sampled (see above)

  void Clear() {
    token_ids.clear();
    positions.clear();
    cu_seqlens_q.clear();
    seq_lens.clear();
    max_blocks_per_seq = 0;
    block_tables.clear();
    slot_mapping.clear();
    logits_indices.clear();
    hidden_indices.clear();
    is_decode_only = false;
    deferred_tokens.clear();
  }
};

}  // namespace kiln
