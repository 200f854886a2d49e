// Builds the VocabInfo that GrammarCompiler takes from the public Tokenizer interface
// (include/kiln/tokenizer.h): per id the bytes it decodes to (TokenBytes), empty for special
// tokens (IsSpecial), so a grammar never emits them. EOS ids are the tokenizer's EOS plus
// `extra_eos_token_ids` (e.g. <|im_end|> of chat models, from generation_config), which are
// allowed only where the constrained output is complete.
//
// Depends only on the abstract interface, not on any tokenizer implementation.
// Thread-safety: the Tokenizer is only read (its const methods are thread-safe).
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/tokenizer.h"
#include "structured/vocab_index.h"

namespace kiln::structured {

// `vocab_size` may exceed the tokenizer's (padded embedding rows): the extra ids are never allowed.
inline VocabInfo VocabInfoFromTokenizer(const Tokenizer& tokenizer, int vocab_size,
                                        const std::vector<int32_t>& extra_eos_token_ids = {}) {
  VocabInfo info;
  const int n = tokenizer.vocab_size();
  info.vocab_size = vocab_size > n ? vocab_size : n;
  info.token_bytes.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    if (!tokenizer.IsSpecial(id)) info.token_bytes[id] = tokenizer.TokenBytes(id);
  }
  if (tokenizer.eos_token_id() >= 0) info.eos_token_ids.push_back(tokenizer.eos_token_id());
  for (int32_t id : extra_eos_token_ids) {
    if (id >= 0 && id < info.vocab_size) info.eos_token_ids.push_back(id);
  }
  return info;
}

}  // namespace kiln::structured
