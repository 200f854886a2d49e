// StreamingDetokenizer: BpeTokenizer's IncrementalDetokenizer. It keeps a small window of ids
// [prefix_offset, end) and emits the part of Decode(window) that follows
// Decode([prefix_offset, read_offset)) once it is final: it holds back text while the bytes of a
// byte-level decoder end inside a UTF-8 character (other decoders: while the text ends with
// U+FFFD), and while the last id is a byte-fallback piece (a <0xXX> run can still turn into a
// character, or into one U+FFFD per byte). Flush() ends the stream. Decoding from a token boundary
// on both sides makes SentencePiece's leading-space strip and skipped special tokens come out as in
// a full decode. Ids outside the vocabulary are ignored.
//
// Thread-safety: one stream, one thread; the tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/tokenizer.h"

namespace kiln::tokenizer {

class BpeTokenizer;

class StreamingDetokenizer final : public IncrementalDetokenizer {
 public:
  StreamingDetokenizer(const BpeTokenizer& tokenizer, bool skip_special_tokens)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  void Prime(std::span<const int32_t> context_ids) override;
  std::string Push(int32_t id) override;
  std::string Flush() override;

 private:
  std::string DecodeFrom(size_t begin, size_t end) const;
  // The part of `text` after prefix_text_, cut at a character boundary.
  std::string Delta(const std::string& text) const;

  const BpeTokenizer& tokenizer_;
  const bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;
  size_t read_offset_ = 0;
  std::string prefix_text_;  // Decode(ids_[prefix_offset_, read_offset_))
};

}  // namespace kiln::tokenizer
