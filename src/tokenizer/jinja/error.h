// TemplateError: the one exception type used *inside* the Jinja interpreter (lexer, parser,
// evaluator, builtins). It never leaves src/tokenizer/jinja: ChatTemplate::Parse/Render catch it
// at the module boundary and turn it into a Status whose message names the line, the column and
// the problem.
//
// Thread-safety: a value type.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln::jinja {

// A position in the template source, 1-based. line == 0 means "unknown".
struct SourceLoc {
  int line = 0;
  int col = 0;
};

enum class TemplateErrorKind {
  kSyntax,   // the template text is malformed (unknown tag, unclosed block, unknown filter)
  kRuntime,  // evaluation failed (type error, undefined attribute, limits)
  kRaised,   // the template called raise_exception(msg)
};

class TemplateError final : public std::runtime_error {
 public:
  TemplateError(TemplateErrorKind kind, SourceLoc loc, const std::string& message)
      : std::runtime_error(message), kind_(kind), loc_(loc) {}
  TemplateErrorKind kind() const { return kind_; }
  SourceLoc loc() const { return loc_; }
  // "line L, column C: message" (or just the message when the position is unknown).
  std::string Describe() const;

 private:
  TemplateErrorKind kind_;
  SourceLoc loc_;
};

[[noreturn]] inline void ThrowRuntime(SourceLoc loc, const std::string& message) {
  throw TemplateError(TemplateErrorKind::kRuntime, loc, message);
}
[[noreturn]] inline void ThrowSyntax(SourceLoc loc, const std::string& message) {
  throw TemplateError(TemplateErrorKind::kSyntax, loc, message);
}

}  // namespace kiln::jinja
