#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja/text.h"

namespace kiln::jinja {

Value Value::Undefined(std::string hint) {
  Value v;
  v.str_ = std::move(hint);
  return v;
}
Value Value::UndefinedName(std::string_view name) {
  Value v;
  v.str_ = name;
  v.scalar_.i = 1;
  return v;
}
Value Value::UndefinedDictKey(std::string_view key) {
  Value v;
  v.str_ = key;
  v.scalar_.i = 2;
  return v;
}

std::string UndefinedMessage(const Value& undefined) {
  switch (undefined.int_value()) {
    case 1:
      return "'" + undefined.str() + "' is undefined";
    case 2:
      return "'dict object' has no attribute '" + undefined.str() + "'";
    default:
      return undefined.str().empty() ? std::string("value is undefined") : undefined.str();
  }
}

Value Value::None() {
  Value v;
  v.kind_ = ValueKind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = ValueKind::kBool;
  v.scalar_.b = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = ValueKind::kInt;
  v.scalar_.i = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.kind_ = ValueKind::kFloat;
  v.scalar_.f = f;
  return v;
}
namespace {
thread_local AllocationMeter* current_meter = nullptr;
}  // namespace

AllocationMeter::AllocationMeter(size_t budget_bytes)
    : budget_(budget_bytes), previous_(current_meter) {
  current_meter = this;
}
AllocationMeter::~AllocationMeter() { current_meter = previous_; }

void AllocationMeter::Charge(size_t bytes) {
  AllocationMeter* m = current_meter;
  if (m == nullptr) return;
  m->used_ += bytes;
  if (m->used_ > m->budget_) {
    ThrowRuntime({}, "template built too much data (more than " + std::to_string(m->budget_) +
                         " bytes of strings and containers)");
  }
}

Value::Value(const Value& other)
    : kind_(other.kind_), scalar_(other.scalar_), str_(other.str_), ptr_(other.ptr_) {
  if (!str_.empty()) AllocationMeter::Charge(str_.size());
}

Value& Value::operator=(const Value& other) {
  if (this == &other) return *this;
  if (!other.str_.empty()) AllocationMeter::Charge(other.str_.size());
  kind_ = other.kind_;
  scalar_ = other.scalar_;
  str_ = other.str_;
  ptr_ = other.ptr_;
  return *this;
}

Value Value::Str(std::string s) {
  AllocationMeter::Charge(s.size());
  Value v;
  v.kind_ = ValueKind::kString;
  v.str_ = std::move(s);
  return v;
}
namespace {
thread_local ContainerArena* current_arena = nullptr;
}  // namespace

ContainerArena::ContainerArena() : previous_(current_arena) { current_arena = this; }

ContainerArena::~ContainerArena() {
  current_arena = previous_;
  // Keep every live container alive, empty them all, then let go: cycles are broken and no
  // destructor recurses through a deep structure (each container is already empty when it dies).
  std::vector<std::pair<std::shared_ptr<void>, bool>> alive;
  alive.reserve(containers_.size());
  for (const auto& [weak, is_list] : containers_) {
    if (std::shared_ptr<void> p = weak.lock()) alive.emplace_back(std::move(p), is_list);
  }
  for (auto& [p, is_list] : alive) {
    if (is_list) {
      ValueList().swap(*static_cast<ValueList*>(p.get()));
    } else {
      decltype(ValueDict::items)().swap(static_cast<ValueDict*>(p.get())->items);
    }
  }
}

void ContainerArena::Register(const std::shared_ptr<void>& container, bool is_list) {
  if (current_arena != nullptr) current_arena->containers_.emplace_back(container, is_list);
}

Value Value::List(ValueList items) {
  AllocationMeter::Charge((items.size() + 1) * sizeof(Value) + 64);
  Value v;
  v.kind_ = ValueKind::kList;
  v.ptr_ = std::make_shared<ValueList>(std::move(items));
  ContainerArena::Register(v.ptr_, true);
  return v;
}
Value Value::Tuple(ValueList items) {
  Value v = List(std::move(items));
  v.scalar_.b = true;
  return v;
}
Value Value::Dict() {
  AllocationMeter::Charge(sizeof(ValueDict) + 64);
  Value v;
  v.kind_ = ValueKind::kDict;
  v.ptr_ = std::make_shared<ValueDict>();
  ContainerArena::Register(v.ptr_, false);
  return v;
}
Value Value::Namespace() {
  Value v;
  v.kind_ = ValueKind::kNamespace;
  v.ptr_ = std::make_shared<ValueDict>();
  ContainerArena::Register(v.ptr_, false);
  return v;
}
Value Value::Function(std::shared_ptr<const Callable> callable) {
  Value v;
  v.kind_ = ValueKind::kCallable;
  v.ptr_ = std::const_pointer_cast<Callable>(std::move(callable));
  return v;
}

const Value* ValueDict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}
Value* ValueDict::Find(std::string_view key) {
  for (auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}
void ValueDict::Set(std::string key, Value value) {
  if (Value* existing = Find(key)) {
    *existing = std::move(value);
    return;
  }
  AllocationMeter::Charge(sizeof(items.front()) + key.size());
  items.emplace_back(std::move(key), std::move(value));
}

Value CallArgs::Take(size_t index, std::string_view name) const {
  for (const auto& [k, v] : keyword) {
    if (k == name) return v;
  }
  if (index < positional.size()) return positional[index];
  return Value();
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined:
      return "Undefined";
    case ValueKind::kNone:
      return "NoneType";
    case ValueKind::kBool:
      return "bool";
    case ValueKind::kInt:
      return "int";
    case ValueKind::kFloat:
      return "float";
    case ValueKind::kString:
      return "str";
    case ValueKind::kList:
      return "list";
    case ValueKind::kDict:
      return "dict";
    case ValueKind::kNamespace:
      return "Namespace";
    case ValueKind::kCallable:
      return "function";
  }
  return "object";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone:
      return false;
    case ValueKind::kBool:
      return v.bool_value();
    case ValueKind::kInt:
      return v.int_value() != 0;
    case ValueKind::kFloat:
      return v.float_value() != 0.0;
    case ValueKind::kString:
      return !v.str().empty();
    case ValueKind::kList:
      return !v.list().empty();
    case ValueKind::kDict:
      return !v.dict().items.empty();
    case ValueKind::kNamespace:
    case ValueKind::kCallable:
      return true;
  }
  return false;
}

namespace {

// Printing a value is bounded in size: lists and dicts are shared (a.append(a) makes a cycle,
// `a = [a, a]` repeated doubles), so a short template could otherwise ask for exponential work.
constexpr size_t kMaxReprBytes = size_t{16} << 20;

// `ancestors`: the lists / dicts being printed around v; one of them again is a cycle, printed as
// Python does ("[...]", "{...}").
void AppendRepr(const Value& v, std::string* out, std::vector<const void*>* ancestors) {
  if (out->size() > kMaxReprBytes)
    ThrowRuntime({}, "value too large to print (more than " + std::to_string(kMaxReprBytes) +
                         " bytes)");
  if (ancestors->size() > 256) ThrowRuntime({}, "value nested too deeply to print");
  switch (v.kind()) {
    case ValueKind::kString:
      *out += PyReprString(v.str());
      return;
    case ValueKind::kList: {
      const void* self = &v.list();
      if (std::find(ancestors->begin(), ancestors->end(), self) != ancestors->end()) {
        *out += v.is_tuple() ? "(...)" : "[...]";
        return;
      }
      ancestors->push_back(self);
      *out += v.is_tuple() ? '(' : '[';
      bool first = true;
      for (const Value& item : v.list()) {
        if (!first) *out += ", ";
        first = false;
        AppendRepr(item, out, ancestors);
      }
      if (v.is_tuple() && v.list().size() == 1) *out += ',';
      *out += v.is_tuple() ? ')' : ']';
      ancestors->pop_back();
      return;
    }
    case ValueKind::kDict:
    case ValueKind::kNamespace: {
      const bool ns = v.kind() == ValueKind::kNamespace;
      const void* self = &v.dict();
      if (std::find(ancestors->begin(), ancestors->end(), self) != ancestors->end()) {
        *out += ns ? "<Namespace {...}>" : "{...}";
        return;
      }
      ancestors->push_back(self);
      *out += ns ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, item] : v.dict().items) {
        if (!first) *out += ", ";
        first = false;
        *out += PyReprString(k);
        *out += ": ";
        AppendRepr(item, out, ancestors);
      }
      *out += ns ? "}>" : "}";
      ancestors->pop_back();
      return;
    }
    case ValueKind::kUndefined:
      *out += "Undefined";
      return;
    default:
      AppendStr(v, out);
      return;
  }
}

}  // namespace

void AppendStr(const Value& v, std::string* out) {
  switch (v.kind()) {
    case ValueKind::kUndefined:
      return;
    case ValueKind::kNone:
      *out += "None";
      return;
    case ValueKind::kBool:
      *out += v.bool_value() ? "True" : "False";
      return;
    case ValueKind::kInt:
      *out += std::to_string(v.int_value());
      return;
    case ValueKind::kFloat:
      *out += PyFloatRepr(v.float_value());
      return;
    case ValueKind::kString:
      *out += v.str();
      return;
    case ValueKind::kCallable:
      *out += "<function " + v.callable().name + ">";
      return;
    default: {
      std::vector<const void*> ancestors;
      AppendRepr(v, out, &ancestors);
      return;
    }
  }
}

std::string ToStr(const Value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  AppendStr(v, &out);
  return out;
}

std::string Repr(const Value& v) {
  std::string out;
  std::vector<const void*> ancestors;
  AppendRepr(v, &out, &ancestors);
  return out;
}

namespace {
constexpr int kMaxCompareDepth = 256;
}  // namespace

bool Equals(const Value& a, const Value& b) { return EqualsAt(a, b, 0); }

bool EqualsAt(const Value& a, const Value& b, int depth) {
  if (depth > kMaxCompareDepth) ThrowRuntime({}, "comparison of values nested too deeply");
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.int_value() == b.int_value();
    return a.float_value() == b.float_value();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case ValueKind::kUndefined:
    case ValueKind::kNone:
      return true;
    case ValueKind::kString:
      return a.str() == b.str();
    case ValueKind::kList: {
      const ValueList& x = a.list();
      const ValueList& y = b.list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!EqualsAt(x[i], y[i], depth + 1)) return false;
      }
      return true;
    }
    case ValueKind::kDict: {
      const ValueDict& x = a.dict();
      const ValueDict& y = b.dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* other = y.Find(k);
        if (other == nullptr || !EqualsAt(v, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

bool LessThan(const Value& a, const Value& b, SourceLoc loc) { return LessThanAt(a, b, loc, 0); }

bool LessThanAt(const Value& a, const Value& b, SourceLoc loc, int depth) {
  if (depth > kMaxCompareDepth) ThrowRuntime(loc, "comparison of values nested too deeply");
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.int_value() < b.int_value();
    return a.float_value() < b.float_value();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list()) {
    const ValueList& x = a.list();
    const ValueList& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (LessThanAt(x[i], y[i], loc, depth + 1)) return true;
      if (LessThanAt(y[i], x[i], loc, depth + 1)) return false;
    }
    return x.size() < y.size();
  }
  ThrowRuntime(loc, "'<' not supported between instances of '" + TypeName(a) + "' and '" +
                        TypeName(b) + "'");
}

template <typename Json>
Value FromJson(const Json& j, int max_depth) {
  if (max_depth < 0) ThrowRuntime({}, "JSON input nested too deeply");
  switch (j.type()) {
    case Json::value_t::null:
      return Value::None();
    case Json::value_t::boolean:
      return Value::Bool(j.template get<bool>());
    case Json::value_t::number_integer:
      return Value::Int(j.template get<int64_t>());
    case Json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case Json::value_t::number_float:
      return Value::Float(j.template get<double>());
    case Json::value_t::string:
      return Value::Str(j.template get<std::string>());
    case Json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(FromJson(item, max_depth - 1));
      return Value::List(std::move(items));
    }
    case Json::value_t::object: {
      Value d = Value::Dict();
      d.dict().items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.dict().items.emplace_back(it.key(), FromJson(it.value(), max_depth - 1));
      }
      return d;
    }
    default:
      return Value::None();  // binary / discarded: nothing a template can use
  }
}

template Value FromJson<nlohmann::json>(const nlohmann::json&, int);
template Value FromJson<nlohmann::ordered_json>(const nlohmann::ordered_json&, int);

namespace {

void AppendJsonString(std::string_view s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  for (size_t pos = 0; pos < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[pos]);
    if (c < 0x80) {
      ++pos;
      switch (c) {
        case '"':
          *out += "\\\"";
          break;
        case '\\':
          *out += "\\\\";
          break;
        case '\n':
          *out += "\\n";
          break;
        case '\r':
          *out += "\\r";
          break;
        case '\t':
          *out += "\\t";
          break;
        case '\b':
          *out += "\\b";
          break;
        case '\f':
          *out += "\\f";
          break;
        default:
          if (c < 0x20 || (ensure_ascii && c == 0x7F)) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            *out += buf;
          } else {
            out->push_back(static_cast<char>(c));
          }
      }
      continue;
    }
    size_t start = pos;
    uint32_t cp = DecodeUtf8(s, &pos);
    if (!ensure_ascii) {
      out->append(s.substr(start, pos - start));
      continue;
    }
    char buf[16];
    if (cp >= 0x10000) {
      uint32_t v = cp - 0x10000;
      std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
    } else {
      std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
    }
    *out += buf;
  }
  out->push_back('"');
}

void AppendNewlineIndent(const JsonFormat& f, int level, std::string* out) {
  out->push_back('\n');
  out->append(static_cast<size_t>(f.indent) * level, ' ');
}

void ToJsonImpl(const Value& v, const JsonFormat& f, SourceLoc loc, int level, std::string* out) {
  if (level > 256) ThrowRuntime(loc, "tojson: value nested too deeply (or cyclic)");
  if (out->size() > kMaxReprBytes)  // shared lists: [a, a] repeated doubles at each level
    ThrowRuntime(loc, "tojson: value too large (more than " + std::to_string(kMaxReprBytes) +
                          " bytes)");
  const std::string& item_sep =
      f.custom_separators ? f.item_separator : (f.indent >= 0 ? "," : ", ");
  switch (v.kind()) {
    case ValueKind::kNone:
      *out += "null";
      return;
    case ValueKind::kBool:
      *out += v.bool_value() ? "true" : "false";
      return;
    case ValueKind::kInt:
      *out += std::to_string(v.int_value());
      return;
    case ValueKind::kFloat: {
      double d = v.float_value();
      if (std::isnan(d))
        *out += "NaN";
      else if (std::isinf(d))
        *out += d < 0 ? "-Infinity" : "Infinity";
      else
        *out += PyFloatRepr(d);
      return;
    }
    case ValueKind::kString:
      AppendJsonString(v.str(), f.ensure_ascii, out);
      return;
    case ValueKind::kList: {
      const ValueList& items = v.list();
      if (items.empty()) {
        *out += "[]";
        return;
      }
      out->push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) *out += item_sep;
        if (f.indent >= 0) AppendNewlineIndent(f, level + 1, out);
        ToJsonImpl(items[i], f, loc, level + 1, out);
      }
      if (f.indent >= 0) AppendNewlineIndent(f, level, out);
      out->push_back(']');
      return;
    }
    case ValueKind::kDict:
    case ValueKind::kNamespace: {
      const ValueDict& d = v.dict();
      if (d.items.empty()) {
        *out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> order;
      order.reserve(d.items.size());
      for (const auto& item : d.items) order.push_back(&item);
      if (f.sort_keys) {
        std::stable_sort(order.begin(), order.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out->push_back('{');
      for (size_t i = 0; i < order.size(); ++i) {
        if (i > 0) *out += item_sep;
        if (f.indent >= 0) AppendNewlineIndent(f, level + 1, out);
        AppendJsonString(order[i]->first, f.ensure_ascii, out);
        *out += f.key_separator;
        ToJsonImpl(order[i]->second, f, loc, level + 1, out);
      }
      if (f.indent >= 0) AppendNewlineIndent(f, level, out);
      out->push_back('}');
      return;
    }
    case ValueKind::kUndefined:
      ThrowRuntime(loc, "tojson: Object of type Undefined is not JSON serializable (" +
                            UndefinedMessage(v) + ")");
    case ValueKind::kCallable:
      ThrowRuntime(loc, "tojson: Object of type function is not JSON serializable");
  }
}

}  // namespace

void ToJson(const Value& v, const JsonFormat& format, SourceLoc loc, std::string* out) {
  ToJsonImpl(v, format, loc, 0, out);
}

}  // namespace kiln::jinja
