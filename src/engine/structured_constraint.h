// Wires src/structured (GrammarCompiler / GrammarMatcher) into the engine's TokenConstraint hook:
// a TokenConstraintFactory that compiles a request's ResponseFormat (cached by the compiler) and
// follows the request with a GrammarMatcher. The vocabulary index is built from the tokenizer on
// the first constrained request (it costs a pass over the vocabulary), not at engine start.
//
// Thread-safety: the factory may be called from any number of threads at once.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/token_constraint.h"
#include "kiln/tokenizer.h"

namespace kiln {

// `tokenizer` must outlive the factory. Token ids in [0, vocab_size) that the tokenizer marks
// special (or does not know) are never allowed by a grammar, except the EOS ids, which a grammar
// allows where its output is complete.
TokenConstraintFactory MakeStructuredConstraintFactory(const Tokenizer* tokenizer, int vocab_size,
                                                       std::vector<int32_t> eos_token_ids);

}  // namespace kiln
