// GBNF grammar text (llama.cpp's syntax) → Grammar. Rules `name ::= alternatives`; sequences of
// "literals" (escapes \n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH), [character classes] / [^...], '.',
// rule names and ( groups ), with postfix * + ? {m} {m,} {m,n}; '|' alternation; '#' comments.
// A rule ends where the next `name ::=` begins (newlines are otherwise insignificant). The start
// rule is `root`. Characters are Unicode code points matched as UTF-8.
//
// Thread-safety: pure function.
#pragma once

#include <string_view>

#include "kiln/status.h"
#include "structured/grammar.h"

namespace kiln::structured {

StatusOr<Grammar> GbnfToGrammar(std::string_view text);

}  // namespace kiln::structured
