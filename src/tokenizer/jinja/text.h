// Python-flavoured helpers over UTF-8 strings, used by the Jinja interpreter so that string
// operations match what HF transformers' Jinja (CPython str) does: length/indexing/slicing count
// code points, strip() without arguments strips Unicode whitespace, repr() quotes like CPython.
// Case mapping is per code point (utf8proc simple case mapping; no 'ß' → "SS" expansion).
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::jinja {

bool IsAscii(std::string_view s);
// Number of code points (invalid bytes count as one each).
size_t CodepointCount(std::string_view s);
// Byte offset where each code point starts, plus s.size() at the end (size = count + 1).
std::vector<size_t> CodepointOffsets(std::string_view s);
// Decodes the code point at s[*pos] and advances *pos (invalid byte → U+FFFD, advance 1).
uint32_t DecodeUtf8(std::string_view s, size_t* pos);
void AppendUtf8(uint32_t cp, std::string* out);

// CPython str.isspace() for one code point.
bool IsPyWhitespace(uint32_t cp);
// str.strip()/lstrip()/rstrip(): with chars == nullptr strips Unicode whitespace, else strips any
// code point that occurs in *chars.
std::string_view PyStrip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit) / rsplit; sep == nullptr → split on whitespace runs.
std::vector<std::string> PySplit(std::string_view s, const std::string* sep, int64_t maxsplit,
                                 bool from_right);
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyCapitalize(std::string_view s);  // first char upper, the rest lower
std::string PyTitle(std::string_view s);       // str.title()
// str.replace(old, new, count); count < 0 → all.
std::string PyReplace(std::string_view s, std::string_view from, std::string_view to,
                      int64_t count);
// repr() of a str: quotes with ' unless the text has ' and no ", escapes like CPython.
std::string PyReprString(std::string_view s);
// repr() of a float: shortest round-trip digits, CPython's fixed/scientific switch.
std::string PyFloatRepr(double d);

}  // namespace kiln::jinja
