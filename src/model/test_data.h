// Test-only helpers: where the shared reference data lives (KILN_SHARED, else
// $KILN_SOURCE_DIR/../shared) and a single-sequence ForwardBatch builder for driving a Backend.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "backend/forward_batch.h"
#include "model/mapped_file.h"

namespace kiln::testing {

inline std::string SharedDir() {
  if (const char* s = std::getenv("KILN_SHARED")) return s;
  const char* src = std::getenv("KILN_SOURCE_DIR");
  return std::string(src != nullptr ? src : ".") + "/../shared";
}

// Path under the shared dir, or "" when it does not exist.
inline std::string SharedPath(const std::string& relative) {
  const std::string path = SharedDir() + "/" + relative;
  return FileExists(path) ? path : "";
}

// One sequence whose blocks are 0, 1, 2, ... (slot == position): `tokens` are the new tokens at
// positions [start_pos, start_pos + tokens.size()). Logits for every row when all_logits, else
// for the last row; hidden states for every row when all_hidden.
inline ForwardBatch SingleSequenceBatch(const std::vector<int32_t>& tokens, int start_pos,
                                        int block_size, int max_blocks, bool all_logits,
                                        bool all_hidden = false) {
  ForwardBatch b;
  const int n = static_cast<int>(tokens.size());
  b.token_ids = tokens;
  for (int i = 0; i < n; ++i) {
    b.positions.push_back(start_pos + i);
    b.slot_mapping.push_back(start_pos + i);
    if (all_logits || i == n - 1) b.logits_indices.push_back(i);
    if (all_hidden) b.hidden_indices.push_back(i);
  }
  b.cu_seqlens_q = {0, n};
  b.seq_lens = {start_pos + n};
  b.max_blocks_per_seq = max_blocks;
  for (int i = 0; i < max_blocks; ++i) b.block_tables.push_back(i);
  b.is_decode_only = n == 1;
  (void)block_size;
  return b;
}

// Two fresh sequences prefilled in one batch, for batched-vs-single parity: A = the first
// `prefix_len` tokens in blocks 10..13, B = all of `tokens` in blocks 20..23 (4 blocks a sequence:
// tokens.size() <= 4 · block_size). Logits for the last row of each.
inline ForwardBatch PrefixAndWholeBatch(const std::vector<int32_t>& tokens, int prefix_len,
                                        int block_size) {
  ForwardBatch b;
  const int n = static_cast<int>(tokens.size());
  b.max_blocks_per_seq = 4;
  b.cu_seqlens_q = {0, prefix_len, prefix_len + n};
  b.seq_lens = {prefix_len, n};
  b.block_tables = {10, 11, 12, 13, 20, 21, 22, 23};
  for (int i = 0; i < prefix_len; ++i) {
    b.token_ids.push_back(tokens[static_cast<size_t>(i)]);
    b.positions.push_back(i);
    b.slot_mapping.push_back((10 + i / block_size) * block_size + i % block_size);
  }
  for (int i = 0; i < n; ++i) {
    b.token_ids.push_back(tokens[static_cast<size_t>(i)]);
    b.positions.push_back(i);
    b.slot_mapping.push_back((20 + i / block_size) * block_size + i % block_size);
  }
  b.logits_indices = {prefix_len - 1, prefix_len + n - 1};
  return b;
}

inline std::vector<int32_t> ReadIdsFile(const std::string& path) {
  std::vector<int32_t> ids;
  auto text = ReadFileToString(path);
  if (!text.ok()) return ids;
  std::string num;
  for (char c : *text + " ") {
    if (c >= '0' && c <= '9') {
      num += c;
    } else if (!num.empty()) {
      ids.push_back(std::stoi(num));
      num.clear();
    }
  }
  return ids;
}

}  // namespace kiln::testing
