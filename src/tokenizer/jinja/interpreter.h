// Interpreter: walks a parsed template (ast.h) and renders it to a string, with Jinja's scoping
// (a for-loop iteration and a macro call open a new scope; if-blocks do not; `set` writes the
// innermost scope; namespaces are the way to carry state out of a loop) and jinja2's default
// Undefined (a missing variable or attribute is falsy and prints as ""; using it as an object,
// in arithmetic or calling it is an error).
//
// Guards: output and intermediate strings are capped at RenderLimits::max_output_bytes, all the
// strings and containers a render builds at max_allocated_bytes (cumulative, so memory stays
// bounded while rendering, not checked after), macro calls nest at most max_call_depth deep, and a
// render takes at most max_steps statement/loop steps; any breach is a runtime TemplateError,
// never a crash or hang.
//
// Thread-safety: one Interpreter per render (it holds the render's scopes); the template it walks
// is shared read-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace kiln::jinja {

struct RenderLimits final {
  size_t max_output_bytes = size_t{256} << 20;  // 256 MiB
  // Strings and container slots the render creates or copies, cumulative (AllocationMeter).
  size_t max_allocated_bytes = size_t{4} << 30;
  int max_call_depth = 64;                      // nested macro calls
  int64_t max_steps = 50'000'000;               // statements executed + loop iterations
  // A rule rather than a limit: `{{ x }}` with x Undefined is a runtime error instead of printing
  // "" (jinja2's StrictUndefined, for output only: tests, `or`, `default` still see Undefined).
  // Chat templates keep jinja2's default; workflow templates turn it on (a typo must not vanish).
  bool undefined_output_is_error = false;
};

// A variable scope: a list of (name, value) with a parent to fall back to.
class Scope final {
 public:
  explicit Scope(const Scope* parent) : parent_(parent) { vars_.reserve(4); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

  const Value* Lookup(std::string_view name) const;
  void Set(std::string_view name, Value value);

 private:
  const Scope* parent_;
  std::vector<std::pair<std::string, Value>> vars_;
};

class Interpreter final {
 public:
  explicit Interpreter(RenderLimits limits) : limits_(limits) {}
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `globals` as the top-level variables. Throws TemplateError.
  std::string Render(const Body& body, const ValueDict& globals);

  Value Eval(const Expr& e, Scope& scope);
  // Like Eval, but may return a reference to a value held by a scope or a container instead of
  // copying it (else the result is stored in `scratch`). Use the reference before evaluating
  // anything else (an expression could mutate the container).
  const Value& EvalRef(const Expr& e, Scope& scope, Value& scratch);
  // obj.name as Jinja resolves it (methods first, then dict keys; missing → Undefined with a
  // hint). Throws if obj is Undefined.
  Value GetAttr(const Value& obj, std::string_view name, SourceLoc loc);
  // obj[key] as Jinja resolves it (item first, then attribute).
  Value GetItem(const Value& obj, const Value& key, SourceLoc loc);
  Value CallValue(const Value& callee, const CallArgs& args, SourceLoc loc);
  // Throws if a string/list of `size` bytes/items would pass the output limit.
  void CheckSize(size_t size, SourceLoc loc) const;
  // Items a for loop over `v` visits (list items, dict keys, string characters).
  ValueList Iterate(const Value& v, SourceLoc loc) const;

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  Flow Exec(const Body& body, Scope& scope, std::string& out);
  Flow ExecStmt(const Stmt& s, Scope& scope, std::string& out);
  Flow ExecFor(const Stmt& s, Scope& scope, std::string& out);
  void Assign(const Stmt& s, Scope& scope, Value value);
  void Unpack(const std::vector<std::string>& targets, Value value, Scope& scope, SourceLoc loc);
  Value EvalBinary(const Expr& e, Scope& scope);
  Value EvalCompare(const Expr& e, Scope& scope);
  Value EvalCall(const Expr& e, Scope& scope);
  Value EvalSlice(const Expr& e, Scope& scope);
  CallArgs EvalArgs(const Expr& e, size_t first, Scope& scope);
  Value CallMacro(const Callable& macro, const CallArgs& args, SourceLoc loc);
  void Tick(SourceLoc loc);
  void Append(std::string& out, std::string_view text, SourceLoc loc) const;

  RenderLimits limits_;
  const Scope* root_ = nullptr;
  int call_depth_ = 0;
  int64_t steps_ = 0;
};

// Python `item in container`.
bool Contains(const Value& container, const Value& item, SourceLoc loc);
// Throws the UndefinedError Jinja raises when an Undefined is used as an object.
[[noreturn]] void ThrowUndefined(const Value& undefined, SourceLoc loc);

}  // namespace kiln::jinja
