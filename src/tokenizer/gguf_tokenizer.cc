// CreateTokenizerFromGgufVocab: a GGUF-embedded vocabulary → BpeTokenizer.
//   llama: SentencePiece pieces + scores. BPE where the pair whose merged piece has the highest
//          score merges first (llama.cpp / SentencePiece), ▁ for spaces with one prepended to
//          every text run, <0xXX> byte fallback, BOS per add_bos.
//   gpt2:  byte-level BPE with ranked merges; the pre-tokenizer regex is chosen by `pre`.
// Control, unknown and user-defined tokens are matched in the text before the model.
#include <algorithm>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer_factory.h"
#include "tokenizer/vocab_builder.h"

namespace kiln {
namespace {

using tokenizer::AddedToken;
using tokenizer::BpeTokenizerParts;
using tokenizer::StringIdMap;

GgufTokenType TypeOf(const GgufVocab& vocab, size_t id) {
  return vocab.token_types.empty() ? GgufTokenType::kNormal
                                   : static_cast<GgufTokenType>(vocab.token_types[id]);
}

bool IsMergeable(GgufTokenType type) {
  return type == GgufTokenType::kNormal || type == GgufTokenType::kUndefined;
}

Status Validate(const GgufVocab& vocab) {
  const size_t n = vocab.tokens.size();
  if (n == 0) return Status::DataLoss("GGUF vocabulary: tokenizer.ggml.tokens is empty");
  if (n >= (size_t{1} << 24)) return Status::DataLoss("GGUF vocabulary: too many tokens");
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    return Status::DataLoss("GGUF vocabulary: tokenizer.ggml.scores has " +
                            std::to_string(vocab.scores.size()) + " entries for " +
                            std::to_string(n) + " tokens");
  }
  if (!vocab.token_types.empty() && vocab.token_types.size() != n) {
    return Status::DataLoss("GGUF vocabulary: tokenizer.ggml.token_type has " +
                            std::to_string(vocab.token_types.size()) + " entries for " +
                            std::to_string(n) + " tokens");
  }
  for (int32_t id : {vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.pad_id}) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return Status::DataLoss("GGUF vocabulary: special token id " + std::to_string(id) +
                              " is outside the vocabulary");
    }
  }
  if (vocab.add_bos && vocab.bos_id < 0) {
    return Status::DataLoss("GGUF vocabulary: add_bos_token is set but there is no BOS id");
  }
  if (vocab.add_eos && vocab.eos_id < 0) {
    return Status::DataLoss("GGUF vocabulary: add_eos_token is set but there is no EOS id");
  }
  return Status::Ok();
}

// SentencePiece BPE as merges: every split of a mergeable piece into two pieces is a merge whose
// rank is the position of the piece's score in descending order (equal scores, equal ranks).
std::vector<tokenizer::BpeMerge> MergesFromScores(const GgufVocab& vocab, const StringIdMap& ids) {
  std::vector<float> distinct;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    if (IsMergeable(TypeOf(vocab, id)))
      distinct.push_back(vocab.scores.empty() ? 0.f : vocab.scores[id]);
  }
  std::sort(distinct.begin(), distinct.end(), std::greater<float>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<tokenizer::BpeMerge> merges;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    if (!IsMergeable(TypeOf(vocab, id))) continue;
    const std::string& piece = vocab.tokens[id];
    const float score = vocab.scores.empty() ? 0.f : vocab.scores[id];
    const auto rank = static_cast<int32_t>(
        std::lower_bound(distinct.begin(), distinct.end(), score, std::greater<float>()) -
        distinct.begin());
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      if ((static_cast<uint8_t>(piece[cut]) & 0xC0) == 0x80) continue;  // inside a character
      auto left = ids.find(std::string_view(piece).substr(0, cut));
      auto right = ids.find(std::string_view(piece).substr(cut));
      if (left != ids.end() && right != ids.end()) {
        merges.push_back({left->second, right->second, static_cast<int32_t>(id), rank});
      }
    }
  }
  return merges;
}

StatusOr<std::string_view> PreTokenizerPattern(const std::string& pre) {
  if (pre == "qwen2") return tokenizer::kQwen2Pattern;
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return tokenizer::kLlama3Pattern;
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2")
    return tokenizer::kGpt2Pattern;
  return Status::Unimplemented("GGUF tokenizer.ggml.pre '" + pre +
                               "' is not supported (qwen2, llama-bpe, default/gpt2 are)");
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> CreateTokenizerFromGgufVocab(const GgufVocab& vocab) {
  KILN_RETURN_IF_ERROR(Validate(vocab));
  const size_t n = vocab.tokens.size();
  BpeTokenizerParts parts;
  parts.pieces = vocab.tokens;
  parts.id_used.assign(n, 1);
  std::vector<uint8_t> mergeable(n, 0);
  for (size_t id = 0; id < n; ++id) {
    const GgufTokenType type = TypeOf(vocab, id);
    mergeable[id] = IsMergeable(type) || type == GgufTokenType::kByte ? 1 : 0;
    if (type == GgufTokenType::kControl || type == GgufTokenType::kUserDefined ||
        type == GgufTokenType::kUnknown) {
      AddedToken token;
      token.id = static_cast<int32_t>(id);
      token.content = vocab.tokens[id];
      token.special = type != GgufTokenType::kUserDefined;
      parts.added_tokens.push_back(std::move(token));
    }
  }
  const StringIdMap piece_ids = tokenizer::PieceIds(parts.pieces, mergeable);
  tokenizer::BpeOptions options;
  options.unk_id = vocab.unk_id;
  std::vector<tokenizer::BpeMerge> merges;
  bool byte_level = false;
  if (vocab.model == "llama") {
    options.byte_fallback = true;
    options.fuse_unk = true;
    merges = MergesFromScores(vocab, piece_ids);
    using Step = tokenizer::Normalizer::Step;
    using Kind = tokenizer::Normalizer::Kind;
    Step prepend{Kind::kPrepend, "\xE2\x96\x81"};
    Step replace{Kind::kReplace, " ", "\xE2\x96\x81"};
    parts.normalizer = tokenizer::Normalizer({prepend, replace});
    parts.decoder = tokenizer::Decoder::SentencePiece();
  } else if (vocab.model == "gpt2") {
    byte_level = true;
    std::vector<std::pair<std::string, std::string>> pairs(vocab.merges.size());
    for (size_t i = 0; i < vocab.merges.size(); ++i) {
      KILN_RETURN_IF_ERROR(tokenizer::SplitMergeString(vocab.merges[i], &pairs[i]));
    }
    KILN_ASSIGN_OR_RETURN(merges, tokenizer::MergesFromPairs(pairs, piece_ids));
    KILN_ASSIGN_OR_RETURN(std::string_view pattern, PreTokenizerPattern(vocab.pre));
    KILN_ASSIGN_OR_RETURN(parts.pre_tokenizer, tokenizer::PreTokenizer::IsolatedRegex(pattern));
    if (vocab.pre == "qwen2") {
      parts.normalizer = tokenizer::Normalizer({{tokenizer::Normalizer::Kind::kNfc}});
    }
    options.ignore_merges = pattern == tokenizer::kLlama3Pattern;
    parts.decoder = tokenizer::Decoder::ByteLevel();
  } else {
    return Status::Unimplemented("GGUF tokenizer.ggml.model '" + vocab.model +
                                 "' is not supported (llama and gpt2 are)");
  }
  options.byte_units = byte_level;
  parts.model = std::make_unique<tokenizer::BpeModel>(
      options, tokenizer::ModelSpaceVocab(piece_ids, byte_level), merges,
      tokenizer::ByteFallbackIds(piece_ids));
  if (vocab.add_bos) parts.prefix_ids.push_back(vocab.bos_id);
  if (vocab.add_eos) parts.suffix_ids.push_back(vocab.eos_id);
  parts.bos_id = vocab.bos_id;
  parts.eos_id = vocab.eos_id;
  if (!vocab.chat_template.empty()) parts.chat_templates["default"] = vocab.chat_template;
  return std::unique_ptr<Tokenizer>(std::make_unique<tokenizer::BpeTokenizer>(std::move(parts)));
}

}  // namespace kiln
