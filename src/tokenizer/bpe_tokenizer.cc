#include "tokenizer/bpe_tokenizer.h"

#include "common/check.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/utf8.h"

#include "tokenizer/jinja/chat_template.h"

namespace kiln::tokenizer {

struct BpeTokenizer::ParsedTemplate {
  StatusOr<ChatTemplate> chat_template;
};

BpeTokenizer::BpeTokenizer(BpeTokenizerParts parts)
    : pieces_(std::move(parts.pieces)),
      id_used_(std::move(parts.id_used)),
      model_(std::move(parts.model)),
      normalizer_(std::move(parts.normalizer)),
      pre_tokenizer_(std::move(parts.pre_tokenizer)),
      decoder_(std::move(parts.decoder)),
      prefix_ids_(std::move(parts.prefix_ids)),
      suffix_ids_(std::move(parts.suffix_ids)),
      bos_id_(parts.bos_id),
      eos_id_(parts.eos_id),
      chat_templates_(std::move(parts.chat_templates)) {
  KILN_CHECK(model_ != nullptr);
  KILN_CHECK_EQ(pieces_.size(), id_used_.size());
  const size_t n = pieces_.size();
  special_.assign(n, 0);
  byte_fallback_piece_.assign(n, 0);
  token_bytes_.resize(n);
  const bool byte_fallback = decoder_.has_byte_fallback();
  for (size_t id = 0; id < n; ++id) {
    if (!id_used_[id]) continue;
    token_bytes_[id] = decoder_.PieceBytes(pieces_[id]);
    piece_to_id_.emplace(pieces_[id], static_cast<int32_t>(id));
    if (byte_fallback && ParseByteFallbackPiece(pieces_[id]) >= 0) byte_fallback_piece_[id] = 1;
  }
  std::vector<AddedToken> raw, normalized;
  for (const AddedToken& token : parts.added_tokens) {
    KILN_CHECK(IsValidId(token.id)) << "added token id " << token.id;
    special_[token.id] = token.special ? 1 : 0;
    piece_to_id_[token.content] = token.id;  // the added vocabulary wins, as in HF
    byte_fallback_piece_[token.id] = 0;
    if (token.normalized) {
      // HF matches normalized tokens by their normalized content.
      AddedToken copy = token;
      normalizer_.Apply(token.content, &copy.content);
      normalized_added_piece_[token.id] = copy.content;
      normalized.push_back(std::move(copy));
    } else {
      raw.push_back(token);
    }
  }
  raw_matcher_ = AddedTokenMatcher(raw);
  normalized_matcher_ = AddedTokenMatcher(normalized);
  for (const auto& [name, source] : chat_templates_) {
    parsed_templates_[name] =
        std::make_shared<const ParsedTemplate>(ParsedTemplate{ChatTemplate::Parse(source)});
  }
}

BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::EncodeText(std::string_view text, bool at_text_start,
                              std::vector<int32_t>* ids) const {
  std::string normalized;
  if (!normalizer_.empty()) {
    normalizer_.Apply(text, &normalized);
    text = normalized;
  }
  std::vector<TextSegment> segments;
  if (normalized_matcher_.empty()) {
    segments.push_back({0, text.size(), -1});
  } else {
    normalized_matcher_.Split(text, &segments);
  }
  std::vector<std::string_view> words;
  PreTokenizer::Arena arena;
  for (const TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids->push_back(segment.token_id);
      continue;
    }
    words.clear();
    pre_tokenizer_.Split(text.substr(segment.begin, segment.end - segment.begin),
                         at_text_start && segment.begin == 0, &words, &arena);
    for (std::string_view word : words) model_->Encode(word, ids);
  }
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!IsValidUtf8(text)) {
    repaired = Utf8Lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  if (raw_matcher_.empty()) {
    EncodeText(text, true, &ids);
  } else {
    std::vector<TextSegment> segments;
    raw_matcher_.Split(text, &segments);
    for (const TextSegment& segment : segments) {
      if (segment.token_id >= 0) {
        ids.push_back(segment.token_id);
      } else if (segment.end > segment.begin) {
        EncodeText(text.substr(segment.begin, segment.end - segment.begin), segment.begin == 0,
                   &ids);
      }
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

StatusOr<std::string> BpeTokenizer::Decode(std::span<const int32_t> ids,
                                           bool skip_special_tokens) const {
  for (int32_t id : ids) {
    if (!IsValidId(id)) {
      return Status::InvalidArgument("token id " + std::to_string(id) +
                                     " is not in the vocabulary (size " +
                                     std::to_string(pieces_.size()) + ")");
    }
  }
  return DecodeValid(ids, skip_special_tokens);
}

std::string BpeTokenizer::DecodeValid(std::span<const int32_t> ids,
                                      bool skip_special_tokens) const {
  if (decoder_.is_byte_level()) {
    std::string bytes;
    for (int32_t id : ids) {
      if (skip_special_tokens && special_[id]) continue;
      bytes += token_bytes_[id];
    }
    return Utf8Lossy(bytes);
  }
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special_tokens && special_[id]) continue;
    auto normalized = normalized_added_piece_.find(id);
    pieces.push_back(normalized != normalized_added_piece_.end() ? normalized->second
                                                                 : pieces_[id]);
  }
  return decoder_.Decode(std::move(pieces));
}

bool BpeTokenizer::EndsInsideCharacter(std::span<const int32_t> ids,
                                       bool skip_special_tokens) const {
  std::string tail;  // the last few bytes are enough: a character has at most 4
  for (size_t i = ids.size(); i > 0 && tail.size() < 4; --i) {
    const int32_t id = ids[i - 1];
    if (skip_special_tokens && special_[id]) continue;
    tail.insert(0, token_bytes_[id]);
  }
  return EndsWithIncompleteUtf8(tail);
}

std::unique_ptr<IncrementalDetokenizer> BpeTokenizer::NewDetokenizer(
    bool skip_special_tokens) const {
  return std::make_unique<StreamingDetokenizer>(*this, skip_special_tokens);
}

std::string BpeTokenizer::TokenBytes(int32_t id) const {
  if (!IsValidId(id)) return {};
  if (special_[id]) return pieces_[id];
  return token_bytes_[id];
}

std::string BpeTokenizer::IdToPiece(int32_t id) const {
  return IsValidId(id) ? pieces_[id] : std::string();
}

int32_t BpeTokenizer::PieceToId(std::string_view piece) const {
  auto it = piece_to_id_.find(piece);
  return it == piece_to_id_.end() ? -1 : it->second;
}

bool BpeTokenizer::IsSpecial(int32_t id) const { return IsValidId(id) && special_[id] != 0; }

StatusOr<std::string> BpeTokenizer::ApplyChatTemplate(const nlohmann::ordered_json& messages,
                                                      const ChatTemplateOptions& options) const {
  if (!options.chat_template.empty()) {
    KILN_ASSIGN_OR_RETURN(ChatTemplate parsed, ChatTemplate::Parse(options.chat_template));
    return parsed.Render(messages, options, bos_token(), eos_token());
  }
  if (parsed_templates_.empty()) {
    return Status::FailedPrecondition("the tokenizer has no chat template; pass one explicitly");
  }
  // HF transformers: with tools, a template named "tool_use" wins; otherwise "default"; a single
  // template is used whatever its name.
  auto it = parsed_templates_.end();
  if (!options.tools.is_null()) it = parsed_templates_.find("tool_use");
  if (it == parsed_templates_.end()) it = parsed_templates_.find("default");
  if (it == parsed_templates_.end()) {
    if (parsed_templates_.size() != 1) {
      return Status::InvalidArgument(
          "the tokenizer has several named chat templates and none is 'default'");
    }
    it = parsed_templates_.begin();
  }
  const StatusOr<ChatTemplate>& parsed = it->second->chat_template;
  if (!parsed.ok()) return parsed.status().WithContext("chat template '" + it->first + "'");
  return parsed->Render(messages, options, bos_token(), eos_token());
}

}  // namespace kiln::tokenizer
