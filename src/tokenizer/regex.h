// Regex: a PCRE2 pattern compiled once (UTF + UCP, JIT when available) with the Unicode semantics
// of the Oniguruma engine that HF tokenizers uses for pre-tokenizer patterns (\s also matches
// U+0085). Used by the Split pre-tokenizer and the Replace normalizer.
//
// Thread-safety: immutable after Compile; FindAll may be called from any number of threads
// (match data and the JIT stack are per thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::tokenizer {

struct MatchSpan {
  size_t begin;  // byte offsets into the subject
  size_t end;
};

class Regex final {
 public:
  static StatusOr<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends every non-empty, non-overlapping match of `text` (valid UTF-8), left to right.
  // An engine failure (e.g. the JIT stack limit on pathological input) is kInternal; the matches
  // found before it are kept.
  Status FindAll(std::string_view text, std::vector<MatchSpan>* matches) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Rewrites \s and \S so that PCRE2 (whose \s is "Z category + tab..CR") also treats U+0085 as
// space, as Oniguruma and Rust do. Exposed for tests.
std::string OnigurumaCompatiblePattern(std::string_view pattern);

}  // namespace kiln::tokenizer
