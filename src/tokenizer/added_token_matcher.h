// AddedTokenMatcher: finds added/special tokens written in the text before the BPE model sees it,
// with the semantics of HF tokenizers' AddedVocabulary: leftmost-longest, non-overlapping
// matches; `single_word` tokens only match between non-word characters; `lstrip` / `rstrip`
// swallow the whitespace on their left / right. A match that fails its single_word test is
// skipped (scanning resumes after it, as HF's Aho-Corasick iterator does).
//
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::tokenizer {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;  // skipped by Decode(skip_special_tokens)
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;  // matched in the normalized text instead of the raw text
};

struct TextSegment {
  size_t begin;  // byte range in the text
  size_t end;
  int32_t token_id;  // the matched added token, or -1 for plain text
};

class AddedTokenMatcher final {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  bool empty() const { return tokens_.empty(); }

  // Cuts `text` into plain-text runs and matched tokens, in order, covering all of it except the
  // whitespace that lstrip/rstrip tokens swallow. Appends to *segments.
  void Split(std::string_view text, std::vector<TextSegment>* segments) const;

 private:
  struct Node {
    int32_t first_child = -1;
    int32_t next_sibling = -1;
    int32_t token = -1;  // index into tokens_ of the token ending here
    uint8_t byte = 0;
  };
  int32_t Child(int32_t node, uint8_t byte) const;
  // Length of the longest token starting at text[pos] and its index; 0 when none.
  size_t LongestMatch(std::string_view text, size_t pos, int32_t* token) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  bool first_byte_[256] = {};
  int single_first_byte_ = -1;  // the only first byte of all tokens, when there is one
};

// Unicode White_Space (Rust's char::is_whitespace).
bool IsUnicodeWhitespace(char32_t cp);

}  // namespace kiln::tokenizer
