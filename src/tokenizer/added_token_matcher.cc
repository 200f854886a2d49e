#include "tokenizer/added_token_matcher.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstring>

#include "tokenizer/utf8.h"

namespace kiln::tokenizer {
namespace {

// The word test of single_word tokens: HF checks its neighbours with the Rust regex `\w`, i.e.
// Alphabetic, marks, connector punctuation (_), decimal digits and the join controls.
bool IsWordChar(char32_t cp) {
  if (cp < 0x80) {
    return cp == '_' || (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
  }
  if (cp == 0x200C || cp == 0x200D) return true;
  // Other_Alphabetic symbols: circled / parenthesized / squared Latin letters.
  if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
      (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189)) {
    return true;
  }
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// The code point that ends at text[end] (exclusive), or 0 when none; *length gets its size.
char32_t LastChar(std::string_view text, size_t end, size_t* length = nullptr) {
  if (end == 0) return 0;
  size_t begin = end - 1;
  while (begin > 0 && (static_cast<uint8_t>(text[begin]) & 0xC0) == 0x80 && end - begin < 4)
    --begin;
  char32_t cp = 0;
  if (DecodeUtf8(text, begin, &cp) != end - begin) return 0;
  if (length != nullptr) *length = end - begin;
  return cp;
}

}  // namespace

bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) {
  nodes_.emplace_back();
  for (const AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    int32_t node = 0;
    for (char c : token.content) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t child = Child(node, byte);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        Node n;
        n.byte = byte;
        n.next_sibling = nodes_[node].first_child;
        nodes_.push_back(n);
        nodes_[node].first_child = child;
      }
      node = child;
    }
    if (nodes_[node].token >= 0) continue;  // the same content twice: the first one wins
    nodes_[node].token = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(token);
    first_byte_[static_cast<uint8_t>(token.content[0])] = true;
  }
  int distinct = 0;
  for (int b = 0; b < 256; ++b) {
    if (first_byte_[b]) {
      ++distinct;
      single_first_byte_ = b;
    }
  }
  if (distinct != 1) single_first_byte_ = -1;
}

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  for (int32_t c = nodes_[node].first_child; c >= 0; c = nodes_[c].next_sibling) {
    if (nodes_[c].byte == byte) return c;
  }
  return -1;
}

size_t AddedTokenMatcher::LongestMatch(std::string_view text, size_t pos, int32_t* token) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token >= 0) {
      best = i + 1 - pos;
      *token = nodes_[node].token;
    }
  }
  return best;
}

void AddedTokenMatcher::Split(std::string_view text, std::vector<TextSegment>* segments) const {
  const size_t first_segment = segments->size();
  size_t start_offset = 0;  // end of the last emitted match
  size_t pos = 0;           // where scanning resumes
  while (pos < text.size()) {
    if (single_first_byte_ >= 0) {
      const void* hit = std::memchr(text.data() + pos, single_first_byte_, text.size() - pos);
      if (hit == nullptr) break;
      pos = static_cast<const char*>(hit) - text.data();
    } else if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t index = -1;
    const size_t length = LongestMatch(text, pos, &index);
    if (length == 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos;
    size_t stop = pos + length;
    pos = stop;
    if (token.single_word) {
      char32_t cp = 0;
      const bool start_ok = start == 0 || !IsWordChar(LastChar(text, start));
      const bool stop_ok =
          stop == text.size() || DecodeUtf8(text, stop, &cp) == 0 || !IsWordChar(cp);
      if (!start_ok || !stop_ok) continue;
    }
    if (token.lstrip) {
      size_t len = 0;
      while (start > start_offset && IsUnicodeWhitespace(LastChar(text, start, &len))) start -= len;
      start = std::max(start, start_offset);
    }
    if (token.rstrip) {
      char32_t cp = 0;
      size_t n = 0;
      while (stop < text.size() && (n = DecodeUtf8(text, stop, &cp)) > 0 &&
             IsUnicodeWhitespace(cp)) {
        stop += n;
      }
      pos = stop;
    }
    if (start_offset < start) segments->push_back({start_offset, start, -1});
    segments->push_back({start, stop, token.id});
    start_offset = stop;
  }
  if (start_offset < text.size() || segments->size() == first_segment) {
    segments->push_back({start_offset, text.size(), -1});
  }
}

}  // namespace kiln::tokenizer
