// Decoder: token pieces → text, with the semantics of HF tokenizers' `decoder` (each step's
// decode_chain over the list of pieces, then concatenation): ByteLevel (UTF-8 repaired like
// String::from_utf8_lossy), Replace, ByteFallback (<0xXX> runs; an invalid run becomes one U+FFFD
// per byte), Fuse, Strip, Metaspace, and Sequence. No decoder joins the pieces with spaces, as HF
// does. Other HF decoders are kUnimplemented.
//
// Thread-safety: immutable after construction.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::tokenizer {

class Decoder final {
 public:
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  struct Step {
    Kind kind = Kind::kFuse;
    std::string pattern;  // kReplace: literal; kStrip: the character; kMetaspace: replacement
    std::string content;  // kReplace
    size_t start = 0;     // kStrip: how many leading / trailing characters may go
    size_t stop = 0;
    bool strip_first = true;  // kMetaspace: prepend_scheme != never
  };

  Decoder() = default;
  explicit Decoder(std::vector<Step> steps) : steps_(std::move(steps)) {}
  // `json` is tokenizer.json's "decoder" (null → pieces joined with spaces).
  static StatusOr<Decoder> FromJson(const nlohmann::json& json);
  // The decoder of SentencePiece-style vocabularies: ▁ → space, <0xXX> bytes, fuse, strip one
  // leading space (HF's Llama-2 decoder).
  static Decoder SentencePiece();
  static Decoder ByteLevel() { return Decoder({Step{Kind::kByteLevel}}); }

  bool is_byte_level() const { return steps_.size() == 1 && steps_[0].kind == Kind::kByteLevel; }
  bool has_byte_fallback() const;

  // Decodes the pieces of a sequence.
  std::string Decode(std::vector<std::string> pieces) const;

  // The bytes one piece stands for in the middle of a text: the per-piece steps (ByteLevel
  // mapping, Replace, ByteFallback, Metaspace ▁ → space) without the sequence-level ones (Strip,
  // first-piece Metaspace, UTF-8 repair).
  std::string PieceBytes(std::string_view piece) const;

 private:
  static Status AddFromJson(const nlohmann::json& json, const std::string& type,
                            std::vector<Step>* steps);
  std::vector<Step> steps_;
};

// The byte of a "<0xAB>" piece, or -1.
int ParseByteFallbackPiece(std::string_view piece);

}  // namespace kiln::tokenizer
