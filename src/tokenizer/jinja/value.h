// Value: the dynamic value of the Jinja interpreter, modelled on the Python objects that HF
// transformers' Jinja sees (None, bool, int, float, str, list, dict, jinja2 Undefined, namespace,
// macros and builtin functions). Lists, dicts and namespaces have reference semantics (copies of a
// Value share them, as Python objects are shared); everything else is a plain value. Dicts keep
// insertion order and have string keys only.
//
// Also here: Python's str()/repr()/==/< on values, truthiness, JSON in (from nlohmann::json) and
// JSON out (HF's tojson: json.dumps with ensure_ascii=False).
//
// Thread-safety: a Value is not synchronized; one render owns its values.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja/error.h"

namespace kiln::jinja {

class Value;
struct ValueDict;
struct Callable;
using ValueList = std::vector<Value>;

enum class ValueKind : uint8_t {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kDict,
  kNamespace,
  kCallable,
};

class Value final {
 public:
  Value() = default;  // Undefined with no hint
  // Copies of strings are charged to the thread's AllocationMeter (a copied string is new memory).
  Value(const Value& other);
  Value& operator=(const Value& other);
  Value(Value&&) noexcept = default;
  Value& operator=(Value&&) noexcept = default;
  ~Value() = default;
  static Value Undefined(std::string hint);
  // Cheap Undefineds for the hot misses; their message is built only if an error reports it.
  static Value UndefinedName(std::string_view name);    // "'name' is undefined"
  static Value UndefinedDictKey(std::string_view key);  // "'dict object' has no attribute 'key'"
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value Str(std::string s);
  static Value List(ValueList items = {});
  static Value Tuple(ValueList items);  // a list that prints as a Python tuple: (a, b)
  static Value Dict();
  static Value Namespace();
  static Value Function(std::shared_ptr<const Callable> callable);

  ValueKind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == ValueKind::kUndefined; }
  bool is_none() const { return kind_ == ValueKind::kNone; }
  bool is_string() const { return kind_ == ValueKind::kString; }
  bool is_list() const { return kind_ == ValueKind::kList; }
  bool is_tuple() const { return kind_ == ValueKind::kList && scalar_.b; }
  bool is_dict() const { return kind_ == ValueKind::kDict; }
  // bool, int or float (Python numbers; bool is an int).
  bool is_number() const {
    return kind_ == ValueKind::kBool || kind_ == ValueKind::kInt || kind_ == ValueKind::kFloat;
  }
  bool is_integral() const { return kind_ == ValueKind::kBool || kind_ == ValueKind::kInt; }

  bool bool_value() const { return scalar_.b; }
  int64_t int_value() const { return kind_ == ValueKind::kBool ? scalar_.b : scalar_.i; }
  double float_value() const {  // any number as double
    return kind_ == ValueKind::kFloat ? scalar_.f : static_cast<double>(int_value());
  }
  const std::string& str() const { return str_; }  // string value (see UndefinedMessage)
  std::string TakeStr() && { return std::move(str_); }
  ValueList& list() const { return *static_cast<ValueList*>(ptr_.get()); }
  ValueDict& dict() const { return *static_cast<ValueDict*>(ptr_.get()); }  // dict or namespace
  const Callable& callable() const { return *static_cast<const Callable*>(ptr_.get()); }
  const void* identity() const { return ptr_.get(); }

 private:
  ValueKind kind_ = ValueKind::kUndefined;
  union Scalar {
    bool b;
    int64_t i;
    double f;
  } scalar_{.i = 0};
  std::string str_;
  std::shared_ptr<void> ptr_;
};

// An insertion-ordered string-keyed map (Python dict order). Lookup is linear: template dicts
// (messages, tool schemas) are small.
struct ValueDict final {
  std::vector<std::pair<std::string, Value>> items;
  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  void Set(std::string key, Value value);
};

class Interpreter;

// Positional and keyword arguments of a call.
struct CallArgs final {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  // Keyword `name` if given, else positional[index] if present, else Undefined.
  Value Take(size_t index, std::string_view name) const;
};

struct Stmt;
using NativeFunction = std::function<Value(Interpreter&, const CallArgs&, SourceLoc)>;

// A macro defined by the template, or a builtin function (raise_exception, range, ...).
struct Callable final {
  std::string name;
  const Stmt* macro = nullptr;  // set for template macros (owned by the parsed template)
  NativeFunction native;        // set for builtins
};

// What an error about this Undefined says (e.g. "'x' is undefined").
std::string UndefinedMessage(const Value& undefined);
// Python type name used in error messages ("dict", "str", "NoneType", ...).
std::string TypeName(const Value& v);
bool Truthy(const Value& v);
// str(v) as Jinja prints it: Undefined → "", None → "None", True → "True", 1.0 → "1.0",
// lists/dicts → their Python repr.
std::string ToStr(const Value& v);
void AppendStr(const Value& v, std::string* out);
std::string Repr(const Value& v);
// Python ==. Values nested deeper than 256 levels throw a runtime TemplateError.
bool Equals(const Value& a, const Value& b);
bool EqualsAt(const Value& a, const Value& b, int depth);
// Python <: numbers, strings, lists; anything else throws a runtime TemplateError at loc.
bool LessThan(const Value& a, const Value& b, SourceLoc loc);
bool LessThanAt(const Value& a, const Value& b, SourceLoc loc, int depth);

// Collects every list/dict/namespace created on this thread while it is alive; its destructor
// empties those still alive. One per render: it breaks the reference cycles a template can build
// (`l.append(l)`, which would otherwise leak) and keeps the release of deep structures from
// recursing. Values must not be used after their arena is gone (they would read as empty).
class ContainerArena final {
 public:
  ContainerArena();
  ~ContainerArena();
  ContainerArena(const ContainerArena&) = delete;
  ContainerArena& operator=(const ContainerArena&) = delete;
  static void Register(const std::shared_ptr<void>& container, bool is_list);

 private:
  std::vector<std::pair<std::weak_ptr<void>, bool>> containers_;
  ContainerArena* previous_;
};

// Bounds the memory one render can build. While a meter is installed on this thread, every
// string the interpreter creates or copies and every list/dict slot it adds is charged to it, in
// bytes; the charges are cumulative (freed temporaries stay counted), so the budget bounds both
// the memory live at any moment and the work of building it. Past the budget, Charge throws a
// runtime TemplateError. Without a meter, Charge does nothing.
class AllocationMeter final {
 public:
  explicit AllocationMeter(size_t budget_bytes);  // installs itself on this thread
  ~AllocationMeter();                             // reinstalls the previous one
  AllocationMeter(const AllocationMeter&) = delete;
  AllocationMeter& operator=(const AllocationMeter&) = delete;
  static void Charge(size_t bytes);
  size_t used_bytes() const { return used_; }

 private:
  size_t budget_;
  size_t used_ = 0;
  AllocationMeter* previous_;
};

// JSON in. Integers stay ints, other numbers become floats; nesting deeper than max_depth throws.
// Defined for nlohmann::json (objects arrive sorted by key) and nlohmann::ordered_json (objects
// keep their document order, as Python dicts do).
template <typename Json>
Value FromJson(const Json& j, int max_depth = 256);

// HF transformers' tojson: json.dumps(v, ensure_ascii, indent, separators, sort_keys).
struct JsonFormat final {
  int indent = -1;  // < 0: one line
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool custom_separators = false;  // false → ", " / ": " (one line) or "," / ": " (indented)
  std::string item_separator;
  std::string key_separator = ": ";
};
// Throws a runtime TemplateError for values JSON cannot hold (Undefined, macros) or nesting past
// 256 levels.
void ToJson(const Value& v, const JsonFormat& format, SourceLoc loc, std::string* out);

}  // namespace kiln::jinja
