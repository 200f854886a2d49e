#include "tokenizer/incremental_detokenizer.h"

#include <span>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/utf8.h"

namespace kiln::tokenizer {

std::string StreamingDetokenizer::DecodeFrom(size_t begin, size_t end) const {
  return tokenizer_.DecodeValid(std::span<const int32_t>(ids_).subspan(begin, end - begin),
                                skip_special_tokens_);
}

std::string StreamingDetokenizer::Delta(const std::string& text) const {
  if (text.compare(0, prefix_text_.size(), prefix_text_) == 0)
    return text.substr(prefix_text_.size());
  // The window's start decoded differently (should not happen with the supported decoders):
  // emit from the first character boundary after the old text rather than a broken sequence.
  size_t cut = std::min(prefix_text_.size(), text.size());
  while (cut < text.size() && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) ++cut;
  return text.substr(cut);
}

void StreamingDetokenizer::Prime(std::span<const int32_t> context_ids) {
  for (int32_t id : context_ids) {
    if (tokenizer_.IsValidId(id)) ids_.push_back(id);
  }
  // The whole context counts as read: the next Push emits what its text adds after it.
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
  prefix_text_ = DecodeFrom(prefix_offset_, read_offset_);
}

std::string StreamingDetokenizer::Push(int32_t id) {
  if (!tokenizer_.IsValidId(id)) return {};
  ids_.push_back(id);
  // A <0xXX> run stays open until another piece comes; a skipped special token is invisible to
  // the decoder, so it neither closes the run nor adds text.
  if (tokenizer_.IsByteFallbackPiece(id) || (skip_special_tokens_ && tokenizer_.IsSpecial(id))) {
    return {};
  }
  const std::string text = DecodeFrom(prefix_offset_, ids_.size());
  if (text.size() <= prefix_text_.size()) return {};
  // Byte-level: hold exactly while the raw bytes end inside a character (an invalid sequence's
  // U+FFFD is final at once). Other decoders: hold while the text ends with U+FFFD.
  const bool incomplete =
      tokenizer_.is_byte_level()
          ? tokenizer_.EndsInsideCharacter(std::span<const int32_t>(ids_).subspan(read_offset_),
                                           skip_special_tokens_)
          : std::string_view(text).ends_with(kReplacementChar);
  if (incomplete) return {};
  std::string delta = Delta(text);
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  prefix_text_ = DecodeFrom(prefix_offset_, read_offset_);
  return delta;
}

std::string StreamingDetokenizer::Flush() {
  if (read_offset_ == ids_.size()) return {};
  const std::string text = DecodeFrom(prefix_offset_, ids_.size());
  std::string delta = text.size() > prefix_text_.size() ? Delta(text) : std::string();
  prefix_offset_ = read_offset_ = ids_.size();
  prefix_text_.clear();
  return delta;
}

}  // namespace kiln::tokenizer
