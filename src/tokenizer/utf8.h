// UTF-8 primitives for the tokenizer: strict decoding (the Unicode "well-formed" table: no
// overlongs, no surrogates, nothing past U+10FFFF), encoding, and lossy conversion with exactly
// the replacement policy of Rust's String::from_utf8_lossy (one U+FFFD per maximal invalid
// subpart), which is what HF tokenizers' decoders produce.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::tokenizer {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length (1..4) of the well-formed UTF-8 sequence starting at s[pos], storing its code point in
// *cp; 0 when the bytes there are not a complete well-formed sequence.
size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp);

// Length of the longest prefix of s[pos..] that is well-formed but incomplete (it could still
// become a character when more bytes are appended); 0 when s[pos] is a complete char or invalid.
size_t IncompleteUtf8Prefix(std::string_view s, size_t pos);

// Appends the UTF-8 encoding of `cp` (must be a scalar value).
void AppendUtf8(char32_t cp, std::string* out);

bool IsValidUtf8(std::string_view s);

// Appends `bytes` to *out, replacing each maximal invalid subpart with U+FFFD.
void AppendUtf8Lossy(std::string_view bytes, std::string* out);
inline std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  AppendUtf8Lossy(bytes, &out);
  return out;
}

// True when `s` ends with a well-formed but incomplete UTF-8 sequence.
bool EndsWithIncompleteUtf8(std::string_view s);

}  // namespace kiln::tokenizer
