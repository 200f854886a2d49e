// The vocabulary as constrained decoding sees it: per token id the bytes it decodes to, built once
// per model into a ByteTrie (token_cache.h walks it). Takes the vocabulary as data (VocabInfo), so
// it does not depend on the tokenizer implementation.
//
// Tokens with empty bytes (special tokens) are never allowed by a grammar; EOS ids are allowed
// only where the output is complete (the matcher decides).
//
// Thread-safety: immutable after Build; share freely (one per model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "structured/byte_trie.h"

namespace kiln::structured {

struct VocabInfo {
  // Per id: the bytes it decodes to; empty for special tokens that must never be emitted.
  std::vector<std::string> token_bytes;
  std::vector<int32_t> eos_token_ids;
  int vocab_size = 0;  // >= token_bytes.size(); ids past token_bytes count as special
};

class VocabIndex final {
 public:
  static StatusOr<std::shared_ptr<const VocabIndex>> Build(const VocabInfo& info);

  int vocab_size() const { return vocab_size_; }
  int num_mask_words() const { return (vocab_size_ + 31) / 32; }
  const ByteTrie& trie() const { return trie_; }
  const std::string& token_bytes(int32_t id) const { return token_bytes_[id]; }
  bool is_eos(int32_t id) const { return id >= 0 && id < vocab_size_ && is_eos_[id]; }
  const std::vector<int32_t>& eos_token_ids() const { return eos_token_ids_; }
  int num_grammar_tokens() const { return static_cast<int>(trie_.tags().size()); }
  int max_token_bytes() const { return max_token_bytes_; }

 private:
  int vocab_size_ = 0;
  int max_token_bytes_ = 0;
  std::vector<std::string> token_bytes_;  // [vocab_size]
  std::vector<uint8_t> is_eos_;           // [vocab_size]
  std::vector<int32_t> eos_token_ids_;
  ByteTrie trie_;  // every non-EOS token with non-empty bytes
};

}  // namespace kiln::structured
