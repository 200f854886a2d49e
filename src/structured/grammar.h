// The grammar IR every constraint compiles to: a set of rules, each a regular expression over
// bytes (byte sets) and references to other rules, i.e. a context-free grammar in "extended" form.
// JSON Schema, regex, choice and GBNF front ends build a Grammar; compiled_grammar.h turns each
// rule into a DFA and the whole into a pushdown automaton.
//
// Not responsible for: parsing any input syntax, or checking that the grammar is usable (left
// recursion, empty language): the compiler reports those.
//
// Thread-safety: Expr nodes are immutable and shared (shared_ptr<const Expr>); a Grammar is a
// plain value built by one thread.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::structured {

struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;

struct Expr {
  enum class Kind {
    kEmpty,    // matches ""
    kNothing,  // matches no string at all
    kBytes,    // one byte from `bytes`
    kSeq,      // children in order
    kAlt,      // any one child
    kRepeat,   // children[0] repeated [min_repeat, max_repeat] times (max -1 = unbounded)
    kRef,      // the language of rule `rule`
  };
  Kind kind = Kind::kEmpty;
  std::bitset<256> bytes;
  std::vector<ExprPtr> children;
  int min_repeat = 0;
  int max_repeat = -1;
  int rule = -1;
};

// Builders. They simplify trivially (Seq of one child is the child, Nothing absorbs a Seq, ...).
ExprPtr Empty();
ExprPtr Nothing();
ExprPtr Bytes(const std::bitset<256>& set);
ExprPtr ByteRange(uint8_t lo, uint8_t hi);
ExprPtr Literal(std::string_view bytes);
ExprPtr Seq(std::vector<ExprPtr> children);
ExprPtr Alt(std::vector<ExprPtr> children);
ExprPtr Repeat(ExprPtr child, int min_repeat, int max_repeat);
inline ExprPtr Opt(ExprPtr e) { return Repeat(std::move(e), 0, 1); }
inline ExprPtr Star(ExprPtr e) { return Repeat(std::move(e), 0, -1); }
inline ExprPtr Plus(ExprPtr e) { return Repeat(std::move(e), 1, -1); }
ExprPtr Ref(int rule);

// A Unicode code point interval, inclusive.
struct CodePointRange {
  uint32_t lo = 0;
  uint32_t hi = 0;
};
// Sorted, merged, surrogates (U+D800..U+DFFF) removed, clipped to U+10FFFF.
std::vector<CodePointRange> NormalizeRanges(std::vector<CodePointRange> ranges);
std::vector<CodePointRange> ComplementRanges(const std::vector<CodePointRange>& ranges);
// The UTF-8 encodings of every code point in `ranges` (valid UTF-8 only).
ExprPtr Utf8Class(const std::vector<CodePointRange>& ranges);
// Value of a hexadecimal digit, -1 if `c` is not one.
inline int HexDigitValue(uint32_t c) {
  return c >= '0' && c <= '9'   ? static_cast<int>(c - '0')
         : c >= 'a' && c <= 'f' ? static_cast<int>(c - 'a' + 10)
         : c >= 'A' && c <= 'F' ? static_cast<int>(c - 'A' + 10)
                                : -1;
}
// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(uint32_t cp, std::string* out);

// One JSON-string character atom as the encoded bytes inside the quotes: any unescaped char
// except '"', '\\' and controls, or an escape (\" \\ \/ \b \f \n \r \t \uXXXX, no surrogates).
ExprPtr JsonStringChar();
// The JSON-encoded forms (inside a string literal) of every code point in `ranges`: printable
// ASCII as itself, '"' and '\\' escaped, controls as their short or \u00XX escape, non-ASCII as
// UTF-8.
ExprPtr JsonEncodedClass(const std::vector<CodePointRange>& ranges);

struct Rule {
  std::string name;
  ExprPtr body;  // null until defined
  // A counted rule: `body` is call-free and derives JSON string literals ('"' content '"'); the
  // rule's language is those whose content has between min_chars and max_chars characters (code
  // points, an escape sequence counting as one; max -1 = unbounded). The count is carried by the
  // matcher, not spelled out as one automaton state per count (automaton.h Counter).
  bool counted = false;
  int min_chars = 0;
  int max_chars = -1;
};

struct Grammar {
  std::vector<Rule> rules;
  int root = -1;

  int AddRule(std::string name) {
    rules.push_back(Rule{std::move(name), nullptr});
    return static_cast<int>(rules.size()) - 1;
  }
};

// True when the root rule derives no string at all (every rule defined; a cheap fixpoint over
// the IR, so front ends can name the cause before the compiler reports an empty language).
bool IsEmptyLanguage(const Grammar& grammar);

// Debug rendering (GBNF-like).
std::string ToString(const Grammar& grammar);

}  // namespace kiln::structured
