// Regular expressions (the common ECMAScript / PCRE subset) → grammar expressions over bytes.
// Supported: literals, '.', classes [...] / [^...] with ranges, escapes \d \w \s \D \W \S \n \t
// \r \f \v \0 \xHH \uHHHH \u{H..}, escaped punctuation, groups (...), (?:...), (?<name>...),
// alternation, quantifiers * + ? {n} {n,} {n,m} (lazy/possessive suffixes accepted and ignored),
// '^' at the start and '$' at the end (reported, otherwise ignored). Rejected with InvalidArgument
// naming the construct: lookaround, backreferences, \b \B, anchors elsewhere, flags.
//
// Modes: kRaw matches the output bytes (UTF-8) themselves; kJsonString matches the JSON-encoded
// content of a string literal whose decoded value matches the regex (a '"' in the regex is
// produced as \", a newline as \n, ...).
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "kiln/status.h"
#include "structured/grammar.h"

namespace kiln::structured {

enum class RegexMode { kRaw, kJsonString };

struct RegexResult {
  ExprPtr expr;
  bool anchored_start = false;  // the pattern began with '^'
  bool anchored_end = false;    // the pattern ended with '$'
};

StatusOr<RegexResult> ParseRegex(std::string_view pattern, RegexMode mode);

// Whole-output match (anchors ignored), as response_format regex uses it.
StatusOr<ExprPtr> RegexToExpr(std::string_view pattern, RegexMode mode);

}  // namespace kiln::structured
