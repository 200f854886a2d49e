// LoadTokenizer (include/kiln/tokenizer.h) lives here because it needs both the GGUF reader and
// the tokenizer factories: a directory holding tokenizer.json or a tokenizer.json file goes to
// CreateTokenizerFromJson; a .gguf file's tokenizer.ggml.* metadata is read into a GgufVocab and
// handed to CreateTokenizerFromGgufVocab.
//
// Thread-safety: reentrant.
#pragma once

#include "kiln/status.h"
#include "kiln/tokenizer.h"
#include "model/gguf.h"
#include "tokenizer/gguf_vocab.h"

namespace kiln {

// Reads the tokenizer.ggml.* (and tokenizer.chat_template) metadata of a parsed GGUF file.
// tokenizer.ggml.model and tokenizer.ggml.tokens are required; add_bos defaults to true for
// "llama" and false otherwise when the key is absent (llama.cpp's defaults).
StatusOr<GgufVocab> ReadGgufVocab(const GgufFile& file);

}  // namespace kiln
