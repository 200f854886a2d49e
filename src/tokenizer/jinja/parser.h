// Parser: tokens (lexer.h) → statement tree (ast.h) for the Jinja subset kiln supports:
//   {{ expr }}, if/elif/else, for [if filter] with else, set (plain, tuple, namespace attribute and
//   block form), macro, filter blocks, break/continue, do, generation blocks, raw (in the lexer);
//   expressions with Jinja's precedence: ternary, or, and, not, comparisons (chained, in, not in),
//   + -, ~, * / // %, **, unary -/+, postfix .attr [index] [a:b:c] (call), | filters, is tests,
//   literals (str, int, float, true/false/none, lists, tuples, dicts).
// Unknown tags, filters and tests are syntax errors here, before any render.
//
// Thread-safety: pure function.
#pragma once

#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace kiln::jinja {

// Nesting of blocks and expressions the parser accepts (guards the recursion of both the parser
// and the interpreter).
inline constexpr int kMaxNestingDepth = 200;

// Throws TemplateError (kSyntax) naming the line, column and problem.
Body ParseTemplate(const std::vector<Token>& tokens);

}  // namespace kiln::jinja
