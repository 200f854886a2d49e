// GgufVocab: the tokenizer a GGUF file embeds (the `tokenizer.ggml.*` metadata keys), as plain
// data. The model loader (src/model/gguf) fills it from the file; CreateTokenizerFromGgufVocab
// (tokenizer_factory.h) turns it into a Tokenizer. This header knows nothing about the GGUF file
// format itself.
//
// Invariants expected by the factory (checked there, reported as Status): `tokens` non-empty;
// `scores` and `token_types` empty or the same length as `tokens`; ids are -1 or in range.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

// llama.cpp's token types (tokenizer.ggml.token_type).
enum class GgufTokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct GgufVocab {
  std::string model;                 // tokenizer.ggml.model: "llama" (SentencePiece) | "gpt2" (BPE)
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens, indexed by id
  std::vector<float> scores;         // tokenizer.ggml.scores (llama: merge priority); may be empty
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type (GgufTokenType); may be empty
  std::vector<std::string> merges;   // tokenizer.ggml.merges ("a b", gpt2 only), rank = index
  int32_t bos_id = -1;               // tokenizer.ggml.bos_token_id
  int32_t eos_id = -1;               // tokenizer.ggml.eos_token_id
  int32_t unk_id = -1;               // tokenizer.ggml.unknown_token_id
  int32_t pad_id = -1;               // tokenizer.ggml.padding_token_id
  // tokenizer.ggml.add_bos_token / add_eos_token. When add_bos_token is absent, the loader sets
  // add_bos = (model == "llama") (llama.cpp's default); add_eos defaults to false.
  bool add_bos = true;
  bool add_eos = false;
  std::string pre;            // tokenizer.ggml.pre: "qwen2", "llama-bpe", "default", ... (gpt2)
  std::string chat_template;  // tokenizer.chat_template; empty when absent
};

}  // namespace kiln
