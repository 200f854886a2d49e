#include "tokenizer/utf8.h"
#include "common/utf8_encode.h"

#include <cstring>

namespace kiln::tokenizer {
namespace {

// The allowed range of the second byte for a lead byte (Unicode Table 3-7); {1, 0} when invalid.
struct SecondByteRange {
  uint8_t lo, hi;
  int length;  // total sequence length, 0 for an invalid lead
};

inline SecondByteRange LeadInfo(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return {0x80, 0xBF, 2};
  if (b == 0xE0) return {0xA0, 0xBF, 3};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {0x80, 0xBF, 3};
  if (b == 0xED) return {0x80, 0x9F, 3};
  if (b == 0xF0) return {0x90, 0xBF, 4};
  if (b >= 0xF1 && b <= 0xF3) return {0x80, 0xBF, 4};
  if (b == 0xF4) return {0x80, 0x8F, 4};
  return {1, 0, 0};
}

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Number of bytes of s[pos..] that belong to the (possibly broken) sequence starting there:
// the full length when complete; the maximal valid prefix otherwise (at least 1).
// *complete says whether it is a full character.
inline size_t ScanSequence(std::string_view s, size_t pos, bool* complete) {
  const uint8_t b0 = static_cast<uint8_t>(s[pos]);
  *complete = false;
  if (b0 < 0x80) {
    *complete = true;
    return 1;
  }
  // Fast path: the common 3-byte lead bytes (most CJK) followed by two continuation bytes.
  if (b0 >= 0xE1 && b0 <= 0xEC && pos + 2 < s.size() &&
      IsContinuation(static_cast<uint8_t>(s[pos + 1])) &&
      IsContinuation(static_cast<uint8_t>(s[pos + 2]))) {
    *complete = true;
    return 3;
  }
  const SecondByteRange info = LeadInfo(b0);
  if (info.length == 0) return 1;
  size_t n = 1;
  if (pos + n >= s.size()) return n;
  const uint8_t b1 = static_cast<uint8_t>(s[pos + n]);
  if (b1 < info.lo || b1 > info.hi) return n;
  ++n;
  while (n < static_cast<size_t>(info.length)) {
    if (pos + n >= s.size() || !IsContinuation(static_cast<uint8_t>(s[pos + n]))) return n;
    ++n;
  }
  *complete = true;
  return n;
}

}  // namespace

size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp) {
  if (pos >= s.size()) return 0;
  bool complete = false;
  const size_t n = ScanSequence(s, pos, &complete);
  if (!complete) return 0;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  switch (n) {
    case 1:
      *cp = p[0];
      break;
    case 2:
      *cp = (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
      break;
    case 3:
      *cp = (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
      break;
    default:
      *cp = (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
            (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
  return n;
}

size_t IncompleteUtf8Prefix(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  bool complete = false;
  const size_t n = ScanSequence(s, pos, &complete);
  if (complete || LeadInfo(static_cast<uint8_t>(s[pos])).length == 0) return 0;
  // Broken before the end of the input: invalid, not incomplete.
  return pos + n == s.size() ? n : 0;
}

void AppendUtf8(char32_t cp, std::string* out) {
  EncodeUtf8(static_cast<uint32_t>(cp), out);
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Eight ASCII bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t v;
      std::memcpy(&v, s.data() + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    bool complete = false;
    const size_t n = ScanSequence(s, i, &complete);
    if (!complete) return false;
    i += n;
  }
  return true;
}

void AppendUtf8Lossy(std::string_view bytes, std::string* out) {
  out->reserve(out->size() + bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    size_t run = i;
    while (run < bytes.size() && static_cast<uint8_t>(bytes[run]) < 0x80) ++run;
    out->append(bytes.data() + i, run - i);
    i = run;
    if (i >= bytes.size()) break;
    bool complete = false;
    const size_t n = ScanSequence(bytes, i, &complete);
    if (complete) {
      out->append(bytes.data() + i, n);
    } else {
      out->append(kReplacementChar);
    }
    i += n;
  }
}

bool EndsWithIncompleteUtf8(std::string_view s) {
  const size_t start = s.size() >= 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    if (IncompleteUtf8Prefix(s, i) > 0) return true;
  }
  return false;
}

}  // namespace kiln::tokenizer
