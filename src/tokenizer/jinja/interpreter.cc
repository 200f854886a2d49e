#include "tokenizer/jinja/interpreter.h"

#include <cmath>
#include <limits>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/text.h"

namespace kiln::jinja {

const Value* Scope::Lookup(std::string_view name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_) {
    for (const auto& [k, v] : s->vars_) {
      if (k == name) return &v;
    }
  }
  return nullptr;
}

void Scope::Set(std::string_view name, Value value) {
  for (auto& [k, v] : vars_) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  vars_.emplace_back(std::string(name), std::move(value));
}

void ThrowUndefined(const Value& undefined, SourceLoc loc) {
  ThrowRuntime(loc, UndefinedMessage(undefined));
}

bool Contains(const Value& container, const Value& item, SourceLoc loc) {
  switch (container.kind()) {
    case ValueKind::kString:
      if (!item.is_string()) {
        ThrowRuntime(loc, "'in <string>' requires string as left operand, not " + TypeName(item));
      }
      return container.str().find(item.str()) != std::string::npos;
    case ValueKind::kList:
      for (const Value& v : container.list()) {
        if (Equals(v, item)) return true;
      }
      return false;
    case ValueKind::kDict:
      return item.is_string() && container.dict().Find(item.str()) != nullptr;
    case ValueKind::kUndefined:
      return false;
    default:
      ThrowRuntime(loc, "argument of type '" + TypeName(container) + "' is not iterable");
  }
}

void Interpreter::CheckSize(size_t size, SourceLoc loc) const {
  if (size > limits_.max_output_bytes) {
    ThrowRuntime(loc,
                 "output too large (limit " + std::to_string(limits_.max_output_bytes) + " bytes)");
  }
}

void Interpreter::Append(std::string& out, std::string_view text, SourceLoc loc) const {
  CheckSize(out.size() + text.size(), loc);
  out.append(text);
}

void Interpreter::Tick(SourceLoc loc) {
  if (++steps_ > limits_.max_steps) {
    ThrowRuntime(loc, "template exceeded the step limit (" + std::to_string(limits_.max_steps) +
                          " statements/iterations); is it looping forever?");
  }
}

std::string Interpreter::Render(const Body& body, const ValueDict& globals) {
  AllocationMeter meter(limits_.max_allocated_bytes);
  Scope root(nullptr);
  // Declared after `root`, so it empties what the render built before the scopes are destroyed:
  // no reference cycle survives and no deep structure is freed recursively.
  ContainerArena arena;
  for (const auto& [k, v] : globals.items) root.Set(k, v);
  root_ = &root;
  std::string out;
  Exec(body, root, out);
  root_ = nullptr;
  return out;
}

// ---- statements ---------------------------------------------------------------------------

Interpreter::Flow Interpreter::Exec(const Body& body, Scope& scope, std::string& out) {
  for (const StmtPtr& s : body) {
    Flow f = ExecStmt(*s, scope, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::ExecStmt(const Stmt& s, Scope& scope, std::string& out) {
  Tick(s.loc);
  switch (s.kind) {
    case StmtKind::kText:
      Append(out, s.text, s.loc);
      return Flow::kNormal;
    case StmtKind::kOutput: {
      Value scratch;
      const Value& v = EvalRef(*s.expr, scope, scratch);
      if (v.is_undefined() && limits_.undefined_output_is_error) {
        ThrowRuntime(s.loc, UndefinedMessage(v) + " (an undefined value cannot be printed)");
      }
      if (v.is_string()) {
        Append(out, v.str(), s.loc);
      } else {
        std::string text;
        AppendStr(v, &text);
        Append(out, text, s.loc);
      }
      return Flow::kNormal;
    }
    case StmtKind::kIf: {
      for (size_t i = 0; i < s.conditions.size(); ++i) {
        if (Truthy(Eval(*s.conditions[i], scope))) return Exec(s.bodies[i], scope, out);
      }
      return Exec(s.else_body, scope, out);
    }
    case StmtKind::kFor:
      return ExecFor(s, scope, out);
    case StmtKind::kSet:
      Assign(s, scope, Eval(*s.expr, scope));
      return Flow::kNormal;
    case StmtKind::kSetBlock: {
      std::string text;
      Exec(s.body, scope, text);
      Value value = Value::Str(std::move(text));
      if (s.expr) {
        Scope filter_scope(&scope);
        filter_scope.Set("__body", std::move(value));
        value = Eval(*s.expr, filter_scope);
      }
      scope.Set(s.targets[0], std::move(value));
      return Flow::kNormal;
    }
    case StmtKind::kMacro: {
      auto callable = std::make_shared<Callable>();
      callable->name = s.targets[0];
      callable->macro = &s;
      scope.Set(s.targets[0], Value::Function(std::move(callable)));
      return Flow::kNormal;
    }
    case StmtKind::kFilterBlock: {
      std::string text;
      Scope filter_scope(&scope);
      Exec(s.body, filter_scope, text);
      filter_scope.Set("__body", Value::Str(std::move(text)));
      Value v = Eval(*s.expr, filter_scope);
      Append(out, ToStr(v), s.loc);
      return Flow::kNormal;
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kDo:
      Eval(*s.expr, scope);
      return Flow::kNormal;
    case StmtKind::kScope:
      return Exec(s.body, scope, out);
  }
  return Flow::kNormal;
}

ValueList Interpreter::Iterate(const Value& v, SourceLoc loc) const {
  switch (v.kind()) {
    case ValueKind::kList:
      return v.list();
    case ValueKind::kDict: {
      ValueList keys;
      keys.reserve(v.dict().items.size());
      for (const auto& [k, item] : v.dict().items) keys.push_back(Value::Str(k));
      return keys;
    }
    case ValueKind::kString: {
      ValueList chars;
      const std::string& s = v.str();
      for (size_t pos = 0; pos < s.size();) {
        size_t start = pos;
        DecodeUtf8(s, &pos);
        chars.push_back(Value::Str(s.substr(start, pos - start)));
      }
      return chars;
    }
    case ValueKind::kUndefined:
      return {};
    default:
      ThrowRuntime(loc, "'" + TypeName(v) + "' object is not iterable");
  }
}

void Interpreter::Unpack(const std::vector<std::string>& targets, Value value, Scope& scope,
                         SourceLoc loc) {
  if (targets.size() == 1) {
    scope.Set(targets[0], std::move(value));
    return;
  }
  ValueList items = Iterate(value, loc);
  if (items.size() != targets.size()) {
    ThrowRuntime(loc, "cannot unpack " + std::to_string(items.size()) + " values into " +
                          std::to_string(targets.size()) + " names");
  }
  for (size_t i = 0; i < targets.size(); ++i) scope.Set(targets[i], std::move(items[i]));
}

void Interpreter::Assign(const Stmt& s, Scope& scope, Value value) {
  if (s.target_attr.empty()) {
    Unpack(s.targets, std::move(value), scope, s.loc);
    return;
  }
  const Value* ns = scope.Lookup(s.targets[0]);
  if (ns == nullptr || ns->kind() != ValueKind::kNamespace) {
    ThrowRuntime(s.loc, "cannot assign attribute '" + s.target_attr + "' on '" + s.targets[0] +
                            "': only namespace() objects support attribute assignment");
  }
  ns->dict().Set(s.target_attr, std::move(value));
}

Interpreter::Flow Interpreter::ExecFor(const Stmt& s, Scope& scope, std::string& out) {
  ValueList items = Iterate(Eval(*s.expr, scope), s.expr->loc);
  if (s.cond) {
    ValueList kept;
    for (Value& item : items) {
      Tick(s.loc);
      Scope cond_scope(&scope);
      Unpack(s.targets, item, cond_scope, s.loc);
      if (Truthy(Eval(*s.cond, cond_scope))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return Exec(s.else_body, scope, out);

  // One `loop` dict per loop, updated in place each iteration (cheaper than a fresh dict).
  enum {
    kIndex,
    kIndex0,
    kRevindex,
    kRevindex0,
    kFirst,
    kLast,
    kLength,
    kPrev,
    kNext,
    kDepth,
    kDepth0,
    kCycle,
    kNumFields
  };
  static constexpr const char* kNames[kNumFields] = {"index",    "index0", "revindex", "revindex0",
                                                     "first",    "last",   "length",   "previtem",
                                                     "nextitem", "depth",  "depth0",   "cycle"};
  Value loop = Value::Dict();
  auto& fields = loop.dict().items;
  for (const char* name : kNames) fields.emplace_back(name, Value());
  auto cycle_index = std::make_shared<int64_t>(0);
  auto cycle = std::make_shared<Callable>();
  cycle->name = "loop.cycle";
  cycle->native = [cycle_index](Interpreter&, const CallArgs& args, SourceLoc loc) {
    if (args.positional.empty()) ThrowRuntime(loc, "loop.cycle() needs at least one argument");
    return args.positional[*cycle_index % static_cast<int64_t>(args.positional.size())];
  };
  const int64_t n = static_cast<int64_t>(items.size());
  fields[kLength].second = Value::Int(n);
  fields[kDepth].second = Value::Int(1);
  fields[kDepth0].second = Value::Int(0);
  fields[kCycle].second = Value::Function(cycle);

  for (int64_t i = 0; i < n; ++i) {
    Tick(s.loc);
    *cycle_index = i;
    fields[kIndex].second = Value::Int(i + 1);
    fields[kIndex0].second = Value::Int(i);
    fields[kRevindex].second = Value::Int(n - i);
    fields[kRevindex0].second = Value::Int(n - i - 1);
    fields[kFirst].second = Value::Bool(i == 0);
    fields[kLast].second = Value::Bool(i == n - 1);
    fields[kPrev].second = i > 0 ? items[i - 1] : Value::UndefinedName("loop.previtem");
    fields[kNext].second = i + 1 < n ? items[i + 1] : Value::UndefinedName("loop.nextitem");
    Scope iter_scope(&scope);
    Unpack(s.targets, items[i], iter_scope, s.loc);
    iter_scope.Set("loop", loop);
    if (Exec(s.body, iter_scope, out) == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

// ---- expressions --------------------------------------------------------------------------

CallArgs Interpreter::EvalArgs(const Expr& e, size_t first, Scope& scope) {
  CallArgs args;
  args.positional.reserve(e.args.size() - first);
  for (size_t i = first; i < e.args.size(); ++i) args.positional.push_back(Eval(*e.args[i], scope));
  for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, Eval(*v, scope));
  return args;
}

const Value& Interpreter::EvalRef(const Expr& e, Scope& scope, Value& scratch) {
  if (e.kind == ExprKind::kLiteral) return e.literal;
  if (e.kind == ExprKind::kName) {
    if (const Value* v = scope.Lookup(e.name)) return *v;
  } else if (e.kind == ExprKind::kGetAttr &&
             (e.args[0]->kind == ExprKind::kName || e.args[0]->kind == ExprKind::kGetAttr ||
              e.args[0]->kind == ExprKind::kGetItem)) {
    // A member of a dict reached through variables: refer to it in place (the dict is owned by a
    // scope, not by a temporary, when the object itself came back by reference).
    Value obj_scratch;
    const Value& obj = EvalRef(*e.args[0], scope, obj_scratch);
    if (&obj != &obj_scratch && obj.kind() == ValueKind::kDict && !HasMethod(obj, e.name)) {
      if (const Value* v = obj.dict().Find(e.name)) return *v;
    }
    scratch = GetAttr(obj, e.name, e.loc);
    return scratch;
  } else if (e.kind == ExprKind::kGetItem && e.args[0]->kind == ExprKind::kName) {
    Value key = Eval(*e.args[1], scope);  // first: it could mutate the container
    Value obj_scratch;
    const Value& obj = EvalRef(*e.args[0], scope, obj_scratch);
    if (&obj != &obj_scratch) {
      if (obj.kind() == ValueKind::kDict && key.is_string()) {
        if (const Value* v = obj.dict().Find(key.str())) return *v;
      } else if (obj.is_list() && key.is_integral()) {
        const int64_t n = static_cast<int64_t>(obj.list().size());
        int64_t i = key.int_value() < 0 ? key.int_value() + n : key.int_value();
        if (i >= 0 && i < n) return obj.list()[i];
      }
    }
    scratch = GetItem(obj, key, e.loc);
    return scratch;
  }
  scratch = Eval(e, scope);
  return scratch;
}

Value Interpreter::Eval(const Expr& e, Scope& scope) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName: {
      const Value* v = scope.Lookup(e.name);
      if (v != nullptr) return *v;
      return Value::UndefinedName(e.name);
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      ValueList items;
      items.reserve(e.args.size());
      for (const ExprPtr& a : e.args) items.push_back(Eval(*a, scope));
      if (e.kind == ExprKind::kTuple) return Value::Tuple(std::move(items));
      return Value::List(std::move(items));
    }
    case ExprKind::kDict: {
      Value d = Value::Dict();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value key = Eval(*e.args[i], scope);
        if (!key.is_string()) {
          ThrowRuntime(e.args[i]->loc, "dict keys must be strings, got " + TypeName(key));
        }
        d.dict().Set(key.str(), Eval(*e.args[i + 1], scope));
      }
      return d;
    }
    case ExprKind::kGetAttr: {
      Value scratch;
      return GetAttr(EvalRef(*e.args[0], scope, scratch), e.name, e.loc);
    }
    case ExprKind::kGetItem: {
      Value obj = Eval(*e.args[0], scope);
      return GetItem(obj, Eval(*e.args[1], scope), e.loc);
    }
    case ExprKind::kSlice:
      return EvalSlice(e, scope);
    case ExprKind::kCall:
      return EvalCall(e, scope);
    case ExprKind::kFilter: {
      CallArgs args = EvalArgs(e, 1, scope);
      Value scratch;
      const Value& input = EvalRef(*e.args[0], scope, scratch);
      return ApplyFilter(*this, e.name, input, args, e.loc);
    }
    case ExprKind::kTest: {
      CallArgs args = EvalArgs(e, 1, scope);
      Value scratch;
      const Value& input = EvalRef(*e.args[0], scope, scratch);
      return Value::Bool(ApplyTest(*this, e.name, input, args, e.loc) != e.negated);
    }
    case ExprKind::kUnary: {
      Value v = Eval(*e.args[0], scope);
      if (e.op == Op::kNot) return Value::Bool(!Truthy(v));
      if (v.is_undefined()) ThrowUndefined(v, e.loc);
      if (!v.is_number()) {
        ThrowRuntime(e.loc, "bad operand type for unary " + e.name + ": '" + TypeName(v) + "'");
      }
      if (e.op == Op::kPos) return v.kind() == ValueKind::kFloat ? v : Value::Int(v.int_value());
      if (v.kind() == ValueKind::kFloat) return Value::Float(-v.float_value());
      if (v.int_value() == std::numeric_limits<int64_t>::min()) {
        ThrowRuntime(e.loc, "integer overflow");
      }
      return Value::Int(-v.int_value());
    }
    case ExprKind::kBinary:
      return EvalBinary(e, scope);
    case ExprKind::kCompare:
      return EvalCompare(e, scope);
    case ExprKind::kCondExpr: {
      if (Truthy(Eval(*e.args[1], scope))) return Eval(*e.args[0], scope);
      if (e.args[2]) return Eval(*e.args[2], scope);
      return Value::Undefined("the conditional expression had no else branch");
    }
  }
  return Value();
}

Value Interpreter::GetAttr(const Value& obj, std::string_view name, SourceLoc loc) {
  switch (obj.kind()) {
    case ValueKind::kUndefined:
      ThrowUndefined(obj, loc);
    case ValueKind::kDict:
    case ValueKind::kNamespace: {
      if (obj.kind() == ValueKind::kDict && HasMethod(obj, name)) break;
      if (const Value* v = obj.dict().Find(name)) return *v;
      if (obj.kind() == ValueKind::kDict) return Value::UndefinedDictKey(name);
      return Value::Undefined("'Namespace object' has no attribute '" + std::string(name) + "'");
    }
    default:
      break;
  }
  if (HasMethod(obj, name)) {
    // A bound method used as a value (e.g. passed around); calls normally go through EvalCall.
    auto bound = std::make_shared<Callable>();
    bound->name = std::string(name);
    bound->native = [self = obj, method = std::string(name)](Interpreter& interp,
                                                             const CallArgs& args, SourceLoc at) {
      bool found = false;
      return CallMethod(interp, self, method, args, at, &found);
    };
    return Value::Function(std::move(bound));
  }
  return Value::Undefined("'" + TypeName(obj) + " object' has no attribute '" + std::string(name) +
                          "'");
}

Value Interpreter::GetItem(const Value& obj, const Value& key, SourceLoc loc) {
  switch (obj.kind()) {
    case ValueKind::kUndefined:
      ThrowUndefined(obj, loc);
    case ValueKind::kDict:
    case ValueKind::kNamespace:
      if (key.is_string()) {
        if (const Value* v = obj.dict().Find(key.str())) return *v;
        if (obj.kind() == ValueKind::kDict && HasMethod(obj, key.str())) {
          return GetAttr(obj, key.str(), loc);
        }
      }
      if (key.is_string()) return Value::UndefinedDictKey(key.str());
      return Value::Undefined("'dict object' has no attribute " + Repr(key));
    case ValueKind::kList:
    case ValueKind::kString: {
      if (!key.is_integral()) {
        if (key.is_string()) return GetAttr(obj, key.str(), loc);
        return Value::Undefined("'" + TypeName(obj) + " object' has no attribute " + Repr(key));
      }
      int64_t i = key.int_value();
      if (obj.is_list()) {
        const int64_t n = static_cast<int64_t>(obj.list().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
          return Value::Undefined("list object has no element " + std::to_string(key.int_value()));
        }
        return obj.list()[i];
      }
      const std::string& s = obj.str();
      if (IsAscii(s)) {
        const int64_t n = static_cast<int64_t>(s.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::Undefined("string index out of range");
        return Value::Str(std::string(1, s[i]));
      }
      std::vector<size_t> offsets = CodepointOffsets(s);
      const int64_t n = static_cast<int64_t>(offsets.size()) - 1;
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::Undefined("string index out of range");
      return Value::Str(s.substr(offsets[i], offsets[i + 1] - offsets[i]));
    }
    default:
      if (key.is_string()) return GetAttr(obj, key.str(), loc);
      return Value::Undefined("'" + TypeName(obj) + " object' is not subscriptable");
  }
}

namespace {

int64_t SliceBound(const Value& v, SourceLoc loc) {
  if (!v.is_integral()) ThrowRuntime(loc, "slice indices must be integers or none");
  return v.int_value();
}

// Python slice semantics: returns the selected indices of a sequence of length n.
std::vector<int64_t> SliceIndices(int64_t n, const Value& start_v, const Value& stop_v,
                                  const Value& step_v, SourceLoc loc) {
  int64_t step = (step_v.is_none() || step_v.is_undefined()) ? 1 : SliceBound(step_v, loc);
  if (step == 0) ThrowRuntime(loc, "slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none() || v.is_undefined()) return dflt;
    int64_t i = SliceBound(v, loc);
    if (i < 0) i += n;
    if (step > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t start = clamp(start_v, step > 0 ? 0 : n - 1);
  int64_t stop = clamp(stop_v, step > 0 ? n : -1);
  std::vector<int64_t> idx;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) idx.push_back(i);
  } else {
    for (int64_t i = start; i > stop; i += step) idx.push_back(i);
  }
  return idx;
}

}  // namespace

Value Interpreter::EvalSlice(const Expr& e, Scope& scope) {
  Value obj = Eval(*e.args[0], scope);
  Value parts[3];
  for (int k = 0; k < 3; ++k) {
    parts[k] = e.args[k + 1] ? Eval(*e.args[k + 1], scope) : Value::None();
  }
  if (obj.is_undefined()) ThrowUndefined(obj, e.loc);
  if (obj.is_list()) {
    const ValueList& list = obj.list();
    ValueList out;
    for (int64_t i :
         SliceIndices(static_cast<int64_t>(list.size()), parts[0], parts[1], parts[2], e.loc)) {
      out.push_back(list[i]);
    }
    return Value::List(std::move(out));
  }
  if (obj.is_string()) {
    const std::string& s = obj.str();
    std::string out;
    if (IsAscii(s)) {
      for (int64_t i :
           SliceIndices(static_cast<int64_t>(s.size()), parts[0], parts[1], parts[2], e.loc)) {
        out.push_back(s[i]);
      }
    } else {
      std::vector<size_t> offsets = CodepointOffsets(s);
      for (int64_t i : SliceIndices(static_cast<int64_t>(offsets.size()) - 1, parts[0], parts[1],
                                    parts[2], e.loc)) {
        out.append(s, offsets[i], offsets[i + 1] - offsets[i]);
      }
    }
    return Value::Str(std::move(out));
  }
  ThrowRuntime(e.loc, "'" + TypeName(obj) + "' object is not subscriptable");
}

Value Interpreter::EvalCall(const Expr& e, Scope& scope) {
  const Expr& callee = *e.args[0];
  if (callee.kind == ExprKind::kGetAttr) {
    // Arguments first, then `self` by reference (nothing runs between fetching and using it).
    CallArgs args = EvalArgs(e, 1, scope);
    Value self_scratch;
    const Value& self = EvalRef(*callee.args[0], scope, self_scratch);
    if (self.is_undefined()) ThrowUndefined(self, callee.loc);
    if (HasMethod(self, callee.name)) {
      bool found = false;
      Value result = CallMethod(*this, self, callee.name, args, e.loc, &found);
      if (found) return result;
    }
    Value fn = GetAttr(self, callee.name, callee.loc);
    return CallValue(fn, args, e.loc);
  }
  Value fn = Eval(callee, scope);
  return CallValue(fn, EvalArgs(e, 1, scope), e.loc);
}

Value Interpreter::CallValue(const Value& callee, const CallArgs& args, SourceLoc loc) {
  if (callee.is_undefined()) ThrowUndefined(callee, loc);
  if (callee.kind() != ValueKind::kCallable) {
    ThrowRuntime(loc, "'" + TypeName(callee) + "' object is not callable");
  }
  const Callable& c = callee.callable();
  if (c.macro != nullptr) return CallMacro(c, args, loc);
  return c.native(*this, args, loc);
}

Value Interpreter::CallMacro(const Callable& macro, const CallArgs& args, SourceLoc loc) {
  if (call_depth_ >= limits_.max_call_depth) {
    ThrowRuntime(
        loc, "maximum macro call depth (" + std::to_string(limits_.max_call_depth) + ") exceeded");
  }
  Tick(loc);
  const Stmt& def = *macro.macro;
  Scope scope(root_);
  size_t num_params = def.params.size();
  for (size_t i = 0; i < num_params; ++i) {
    const std::string& p = def.params[i];
    const Value* given = nullptr;
    if (i < args.positional.size()) given = &args.positional[i];
    for (const auto& [k, v] : args.keyword) {
      if (k == p) {
        if (given != nullptr) {
          ThrowRuntime(loc,
                       "macro '" + macro.name + "' got multiple values for argument '" + p + "'");
        }
        given = &v;
      }
    }
    if (given != nullptr) {
      scope.Set(p, *given);
    } else if (def.defaults[i]) {
      scope.Set(p, Eval(*def.defaults[i], scope));
    } else {
      scope.Set(p, Value::Undefined("parameter '" + p + "' was not provided"));
    }
  }
  ValueList varargs;
  for (size_t i = num_params; i < args.positional.size(); ++i)
    varargs.push_back(args.positional[i]);
  scope.Set("varargs", Value::Tuple(std::move(varargs)));
  Value kwargs = Value::Dict();
  for (const auto& [k, v] : args.keyword) {
    bool is_param = false;
    for (const std::string& p : def.params) is_param = is_param || p == k;
    if (!is_param) kwargs.dict().Set(k, v);
  }
  scope.Set("kwargs", std::move(kwargs));
  std::string out;
  ++call_depth_;
  Exec(def.body, scope, out);
  --call_depth_;
  return Value::Str(std::move(out));
}

namespace {

[[noreturn]] void ThrowOperandError(const std::string& op, const Value& a, const Value& b,
                                    SourceLoc loc) {
  if (a.is_undefined()) ThrowUndefined(a, loc);
  if (b.is_undefined()) ThrowUndefined(b, loc);
  ThrowRuntime(loc, "unsupported operand type(s) for " + op + ": '" + TypeName(a) + "' and '" +
                        TypeName(b) + "'");
}

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

}  // namespace

Value Interpreter::EvalBinary(const Expr& e, Scope& scope) {
  const Op op = e.op;
  const std::string& op_text = e.name;
  if (op == Op::kAnd) {
    Value a = Eval(*e.args[0], scope);
    return Truthy(a) ? Eval(*e.args[1], scope) : a;
  }
  if (op == Op::kOr) {
    Value a = Eval(*e.args[0], scope);
    return Truthy(a) ? a : Eval(*e.args[1], scope);
  }
  Value a = Eval(*e.args[0], scope);
  Value b_scratch;
  const Value& b = EvalRef(*e.args[1], scope, b_scratch);
  const SourceLoc loc = e.loc;
  if (op == Op::kConcat) {
    std::string s = a.is_string() ? std::move(a).TakeStr() : ToStr(a);
    AppendStr(b, &s);
    CheckSize(s.size(), loc);
    return Value::Str(std::move(s));
  }
  const bool ints = a.is_integral() && b.is_integral();
  const bool nums = a.is_number() && b.is_number();
  if (op == Op::kAdd) {
    if (ints) {
      int64_t r;
      if (__builtin_add_overflow(a.int_value(), b.int_value(), &r))
        ThrowRuntime(loc, "integer overflow");
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.float_value() + b.float_value());
    if (a.is_string() && b.is_string()) {
      CheckSize(a.str().size() + b.str().size(), loc);
      std::string s = std::move(a).TakeStr();  // left-associative chains append in place
      s += b.str();
      return Value::Str(std::move(s));
    }
    if (a.is_list() && b.is_list()) {
      ValueList items = a.list();
      items.insert(items.end(), b.list().begin(), b.list().end());
      return Value::List(std::move(items));
    }
    ThrowOperandError(op_text, a, b, loc);
  }
  if (op == Op::kSub) {
    if (ints) {
      int64_t r;
      if (__builtin_sub_overflow(a.int_value(), b.int_value(), &r))
        ThrowRuntime(loc, "integer overflow");
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.float_value() - b.float_value());
    ThrowOperandError(op_text, a, b, loc);
  }
  if (op == Op::kMul) {
    if (ints) {
      int64_t r;
      if (__builtin_mul_overflow(a.int_value(), b.int_value(), &r))
        ThrowRuntime(loc, "integer overflow");
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.float_value() * b.float_value());
    const Value* seq = a.is_integral() ? &b : &a;
    const Value* count = a.is_integral() ? &a : &b;
    if (count->is_integral() && (seq->is_string() || seq->is_list())) {
      int64_t n = std::max<int64_t>(0, count->int_value());
      size_t unit = seq->is_string() ? seq->str().size() : seq->list().size();
      if (unit != 0 && static_cast<uint64_t>(n) > limits_.max_output_bytes / unit) {
        CheckSize(limits_.max_output_bytes + 1, loc);
      }
      if (seq->is_string()) {
        std::string s;
        s.reserve(unit * n);
        for (int64_t i = 0; i < n; ++i) s += seq->str();
        return Value::Str(std::move(s));
      }
      ValueList items;
      for (int64_t i = 0; i < n; ++i)
        items.insert(items.end(), seq->list().begin(), seq->list().end());
      return Value::List(std::move(items));
    }
    ThrowOperandError(op_text, a, b, loc);
  }
  if (op == Op::kDiv || op == Op::kFloorDiv || op == Op::kMod) {
    if (!nums) ThrowOperandError(op_text, a, b, loc);
    if (b.float_value() == 0.0) ThrowRuntime(loc, "division by zero");
    if (op == Op::kDiv) return Value::Float(a.float_value() / b.float_value());
    if (ints) {
      if (a.int_value() == std::numeric_limits<int64_t>::min() && b.int_value() == -1) {
        ThrowRuntime(loc, "integer overflow");
      }
      return Value::Int(op == Op::kFloorDiv ? FloorDiv(a.int_value(), b.int_value())
                                            : FloorMod(a.int_value(), b.int_value()));
    }
    double x = a.float_value();
    double y = b.float_value();
    if (op == Op::kFloorDiv) return Value::Float(std::floor(x / y));
    double r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return Value::Float(r);
  }
  if (op == Op::kPow) {
    if (!nums) ThrowOperandError(op_text, a, b, loc);
    if (ints && b.int_value() >= 0) {
      int64_t base = a.int_value();
      int64_t exp = b.int_value();
      int64_t r = 1;
      while (exp > 0) {
        if ((exp & 1) && __builtin_mul_overflow(r, base, &r)) ThrowRuntime(loc, "integer overflow");
        exp >>= 1;
        if (exp > 0 && __builtin_mul_overflow(base, base, &base))
          ThrowRuntime(loc, "integer overflow");
      }
      return Value::Int(r);
    }
    return Value::Float(std::pow(a.float_value(), b.float_value()));
  }
  ThrowRuntime(loc, "unknown operator '" + op_text + "'");
}

Value Interpreter::EvalCompare(const Expr& e, Scope& scope) {
  Value left = Eval(*e.args[0], scope);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right_scratch;
    const Value& right = EvalRef(*e.args[i + 1], scope, right_scratch);
    const Op op = e.ops[i];
    const SourceLoc loc = e.args[i + 1]->loc;
    bool r;
    if (op == Op::kEq) {
      r = Equals(left, right);
    } else if (op == Op::kNe) {
      r = !Equals(left, right);
    } else if (op == Op::kIn || op == Op::kNotIn) {
      r = Contains(right, left, loc) == (op == Op::kIn);
    } else {
      if (left.is_undefined()) ThrowUndefined(left, loc);
      if (right.is_undefined()) ThrowUndefined(right, loc);
      if (op == Op::kLt)
        r = LessThan(left, right, loc);
      else if (op == Op::kGt)
        r = LessThan(right, left, loc);
      else if (op == Op::kLe)
        r = !LessThan(right, left, loc);
      else
        r = !LessThan(left, right, loc);
    }
    if (!r) return Value::Bool(false);
    left = right;
  }
  return Value::Bool(true);
}

}  // namespace kiln::jinja
