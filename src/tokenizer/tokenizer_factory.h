// Factories that build a kiln::Tokenizer (include/kiln/tokenizer.h) from its two on-disk sources:
// HF `tokenizer.json` (+ tokenizer_config.json) and a GGUF-embedded vocabulary (GgufVocab). The
// public LoadTokenizer(path) dispatches to these; it lives with the GGUF reader (src/model/).
//
// Thread-safety: the factories are reentrant; the returned Tokenizer is immutable.
#pragma once

#include <memory>
#include <string>

#include "kiln/status.h"
#include "kiln/tokenizer.h"
#include "tokenizer/gguf_vocab.h"

namespace kiln {

// `path` is a directory holding tokenizer.json (and optionally tokenizer_config.json, which names
// the special tokens and carries the chat template) or the path of a tokenizer.json file (a
// tokenizer_config.json next to it is read too). Unsupported components are kUnimplemented,
// naming the component; malformed files are kDataLoss / kInvalidArgument.
StatusOr<std::unique_ptr<Tokenizer>> CreateTokenizerFromJson(const std::string& path);

// Builds the tokenizer of a GGUF file from its `tokenizer.ggml.*` metadata.
StatusOr<std::unique_ptr<Tokenizer>> CreateTokenizerFromGgufVocab(const GgufVocab& vocab);

}  // namespace kiln
