// EncodeUtf8: appends one code point as UTF-8 (1–4 bytes). The one encoder kiln's tokenizer,
// Jinja interpreter and grammar engine share. The caller guarantees cp <= 0x10FFFF.
// Utf8CharCount: the code points a run of UTF-8 bytes starts (bytes that are not continuation
// bytes), so that runs cut anywhere inside characters add up to the whole text's count.
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

inline void EncodeUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

inline int Utf8CharCount(std::string_view bytes) {
  int n = 0;
  for (unsigned char b : bytes) n += (b & 0xC0) != 0x80;
  return n;
}

}  // namespace kiln
