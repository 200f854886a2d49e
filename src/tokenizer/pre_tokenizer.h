// PreTokenizer: cuts one normalized text run into the words the BPE model encodes one by one
// (HF tokenizers' `pre_tokenizer`): Split (regex, all five delimiter behaviours, invert),
// ByteLevel (GPT-2 regex when use_regex, add_prefix_space), Metaspace (▁ replacement with the
// always/first/never prepend schemes, optional split), Digits, and Sequence of those.
//
// Words are in model space: kiln runs byte-level BPE on raw bytes, so ByteLevel's byte → character
// mapping is the identity here (the vocabulary was converted instead).
//
// Thread-safety: immutable after construction.
#pragma once

#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"
#include "tokenizer/regex.h"

namespace kiln::tokenizer {

// The regexes of the well-known byte-level pre-tokenizers.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class PreTokenizer final {
 public:
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  enum class PrependScheme { kAlways, kFirst, kNever };
  struct Step {
    Kind kind = Kind::kSplit;
    std::shared_ptr<const Regex> regex;  // kSplit; kByteLevel with use_regex
    std::string literal;                 // kSplit with a string pattern
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;             // kByteLevel
    std::string replacement = "\xE2\x96\x81";  // kMetaspace (▁)
    PrependScheme prepend_scheme = PrependScheme::kAlways;
    bool split = true;      // kMetaspace
    bool identity = false;  // changes nothing in model space (skipped)
  };

  // Scratch space that owns rewritten text; words may point into it. Reuse it across calls.
  using Arena = std::deque<std::string>;

  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<Step> steps);
  PreTokenizer(PreTokenizer&& other) noexcept = default;
  PreTokenizer& operator=(PreTokenizer&& other) noexcept = default;
  // `json` is tokenizer.json's "pre_tokenizer" (null → the text is one word).
  static StatusOr<PreTokenizer> FromJson(const nlohmann::json& json);
  // A Split step with Isolated behaviour (the byte-level BPE pre-tokenizers).
  static StatusOr<PreTokenizer> IsolatedRegex(std::string_view pattern);

  bool has_byte_level() const;
  const std::vector<Step>& steps() const { return steps_; }

  // Appends the words of `text` to *words. `at_text_start`: the run starts at offset 0 of the
  // original input (Metaspace's "first" scheme). Words point into `text` or into *arena.
  void Split(std::string_view text, bool at_text_start, std::vector<std::string_view>* words,
             Arena* arena) const;

 private:
  static Status AddFromJson(const nlohmann::json& json, const std::string& type,
                            std::vector<Step>* steps);
  static void ApplyStep(const Step& step, std::string_view piece, bool first_piece,
                        std::vector<std::string_view>* out, Arena* arena);
  std::vector<Step> steps_;
  std::vector<size_t> active_steps_;  // indices of the steps that change anything
  bool byte_level_ = false;
};

}  // namespace kiln::tokenizer
