// Normalizer: the text → text step that runs on each plain-text run before pre-tokenization
// (HF tokenizers' `normalizer`): Unicode normalization forms (utf8proc), Prepend, Replace (string
// or regex), Lowercase, Strip, and Sequence of those. Other HF normalizers are kUnimplemented.
//
// Thread-safety: immutable after construction.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"
#include "tokenizer/regex.h"

namespace kiln::tokenizer {

class Normalizer final {
 public:
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kPrepend, kReplace, kLowercase, kStrip };
  struct Step {
    Kind kind = Kind::kNfc;
    std::string text;                    // kPrepend: prefix; kReplace: literal pattern
    std::string content;                 // kReplace: replacement
    std::shared_ptr<const Regex> regex;  // kReplace with a regex pattern
    bool left = false, right = false;    // kStrip
  };

  Normalizer() = default;
  explicit Normalizer(std::vector<Step> steps) : steps_(std::move(steps)) {}
  // `json` is tokenizer.json's "normalizer" value (null → no normalization).
  static StatusOr<Normalizer> FromJson(const nlohmann::json& json);

  bool empty() const { return steps_.empty(); }
  // Normalizes `text` (valid UTF-8) into *out (replacing its contents).
  void Apply(std::string_view text, std::string* out) const;

 private:
  static Status AddFromJson(const nlohmann::json& json, const std::string& type,
                            std::vector<Step>* steps);
  std::vector<Step> steps_;
};

// Unicode normalization (utf8proc) with fast paths for text that is already in the form.
enum class UnicodeForm { kNfc, kNfd, kNfkc, kNfkd };
void NormalizeUnicode(std::string_view text, UnicodeForm form, std::string* out);

}  // namespace kiln::tokenizer
