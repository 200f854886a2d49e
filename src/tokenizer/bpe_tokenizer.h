// BpeTokenizer: kiln's one Tokenizer implementation, assembled from the pipeline pieces that both
// sources describe (tokenizer.json and GGUF vocabularies):
//
//   Encode: raw added-token matching → per plain run: Normalizer → normalized added-token
//           matching → PreTokenizer → BpeModel per word → post-processor ids (add_special_tokens)
//   Decode: ids → pieces (special ones skipped on request) → Decoder
//
// It does not parse files: hf_tokenizer_json.cc and gguf_tokenizer.cc fill BpeTokenizerParts.
// Input that is not valid UTF-8 is encoded as its lossy conversion (U+FFFD per invalid subpart).
//
// Thread-safety: immutable after construction; every const method may run on many threads.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kiln/tokenizer.h"
#include "tokenizer/added_token_matcher.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace kiln {
class ChatTemplate;  // tokenizer/jinja/chat_template.h (when built)
}

namespace kiln::tokenizer {

struct BpeTokenizerParts {
  // Vocabulary strings as stored, by id (model tokens and added tokens); "" where an id is unused.
  std::vector<std::string> pieces;
  std::vector<uint8_t> id_used;  // same length as pieces: 1 where the id exists
  std::unique_ptr<BpeModel> model;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  std::vector<AddedToken> added_tokens;
  std::vector<int32_t> prefix_ids;  // added around the text when add_special_tokens
  std::vector<int32_t> suffix_ids;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  // Named Jinja chat templates ("default" is the one used without tools).
  std::map<std::string, std::string> chat_templates;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeTokenizerParts parts);
  ~BpeTokenizer() override;

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  StatusOr<std::string> Decode(std::span<const int32_t> ids,
                               bool skip_special_tokens) const override;
  std::unique_ptr<IncrementalDetokenizer> NewDetokenizer(bool skip_special_tokens) const override;

  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  std::string TokenBytes(int32_t id) const override;
  std::string IdToPiece(int32_t id) const override;
  int32_t PieceToId(std::string_view piece) const override;
  bool IsSpecial(int32_t id) const override;

  int32_t bos_token_id() const override { return bos_id_; }
  int32_t eos_token_id() const override { return eos_id_; }
  std::string bos_token() const override { return IdToPiece(bos_id_); }
  std::string eos_token() const override { return IdToPiece(eos_id_); }

  bool has_chat_template() const override { return !chat_templates_.empty(); }
  StatusOr<std::string> ApplyChatTemplate(const nlohmann::ordered_json& messages,
                                          const ChatTemplateOptions& options) const override;

  // Decode without id checks (ids must be valid): used by the streaming detokenizer.
  std::string DecodeValid(std::span<const int32_t> ids, bool skip_special_tokens) const;
  bool IsValidId(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < pieces_.size() && id_used_[id] != 0;
  }
  bool is_byte_level() const { return decoder_.is_byte_level(); }
  // Byte-level decoders: whether the raw bytes of `ids` end with an incomplete UTF-8 sequence.
  bool EndsInsideCharacter(std::span<const int32_t> ids, bool skip_special_tokens) const;
  // True for <0xXX> pieces when the decoder has ByteFallback (their text depends on neighbours).
  bool IsByteFallbackPiece(int32_t id) const { return byte_fallback_piece_[id] != 0; }

 private:
  void EncodeText(std::string_view text, bool at_text_start, std::vector<int32_t>* ids) const;

  std::vector<std::string> pieces_;
  std::vector<uint8_t> id_used_;
  std::vector<uint8_t> special_;
  // Added tokens with normalized: true decode (outside byte-level vocabularies) as their
  // normalized content, as HF tokenizers does: with a Prepend("▁") normalizer "<unk>" decodes as
  // " <unk>" (tinystories-656k's tok_cases.json).
  std::unordered_map<int32_t, std::string> normalized_added_piece_;
  std::vector<uint8_t> byte_fallback_piece_;
  std::vector<std::string> token_bytes_;
  StringIdMap piece_to_id_;
  std::unique_ptr<BpeModel> model_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Decoder decoder_;
  AddedTokenMatcher raw_matcher_;         // tokens matched in the raw text
  AddedTokenMatcher normalized_matcher_;  // tokens matched after normalization
  std::vector<int32_t> prefix_ids_;
  std::vector<int32_t> suffix_ids_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  std::map<std::string, std::string> chat_templates_;
  // Parsed templates (same keys), or the parse error; filled at construction when kiln_jinja is
  // built.
  struct ParsedTemplate;
  std::map<std::string, std::shared_ptr<const ParsedTemplate>> parsed_templates_;
};

}  // namespace kiln::tokenizer
