// Lexer: template source → a flat token list, applying Jinja's whitespace rules as HF transformers
// configures them (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
//   - newlines are normalized to "\n" and one trailing newline of the source is dropped;
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag; `-%}`, `-}}`, `-#}` all after it;
//   - trim_blocks drops the first "\n" after a block or comment tag (not after `+%}`);
//   - lstrip_blocks drops spaces/tabs between a line start and a block/comment tag (not `{%+`);
//   - comments are dropped, `{% raw %}...{% endraw %}` is emitted as text.
// It does not know statement or expression grammar (see parser.h).
//
// Thread-safety: pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/error.h"

namespace kiln::jinja {

enum class TokenType {
  kText,        // literal template text (value)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword (value)
  kString,      // string literal, unescaped (value)
  kInt,         // integer literal (value: digits)
  kFloat,       // float literal (value)
  kOperator,    // + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : | (value)
  kEof,
};

struct Token final {
  TokenType type;
  std::string value;
  SourceLoc loc;
};

// Throws TemplateError (kSyntax) for unterminated tags, strings and comments or stray characters.
std::vector<Token> Tokenize(std::string_view source);

}  // namespace kiln::jinja
