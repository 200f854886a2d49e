// Methods of str/list/dict values and the global functions (builtins.h).
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <unordered_set>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/text.h"

namespace kiln::jinja {
namespace {

const std::unordered_set<std::string_view>& StrMethods() {
  static const auto* names = new std::unordered_set<std::string_view>{
      "strip",   "lstrip",  "rstrip",  "split",      "rsplit",       "startswith",  "endswith",
      "upper",   "lower",   "title",   "capitalize", "replace",      "find",        "rfind",
      "index",   "count",   "format",  "join",       "splitlines",   "isdigit",     "isalpha",
      "isalnum", "isspace", "isupper", "islower",    "removeprefix", "removesuffix"};
  return *names;
}
const std::unordered_set<std::string_view>& ListMethods() {
  static const auto* names = new std::unordered_set<std::string_view>{"append", "extend", "pop",
                                                                      "insert", "index",  "count"};
  return *names;
}

const std::string* OptStr(const Value& v, std::string* storage, SourceLoc loc,
                          std::string_view what) {
  if (v.is_undefined() || v.is_none()) return nullptr;
  if (!v.is_string())
    ThrowRuntime(loc, std::string(what) + " must be a string or None, not " + TypeName(v));
  *storage = v.str();
  return storage;
}

int64_t OptInt(const Value& v, int64_t dflt, SourceLoc loc, std::string_view what) {
  if (v.is_undefined() || v.is_none()) return dflt;
  if (!v.is_integral()) ThrowRuntime(loc, std::string(what) + " must be an integer");
  return v.int_value();
}

// Code point index of byte offset `byte` in s.
int64_t CodepointIndex(const std::string& s, size_t byte) {
  return static_cast<int64_t>(CodepointCount(std::string_view(s).substr(0, byte)));
}

bool AllChars(const std::string& s, int (*pred)(int)) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}

bool PrefixMatch(const Value& arg, const std::string& s, bool at_end, SourceLoc loc) {
  auto one = [&](const Value& p) {
    if (!p.is_string())
      ThrowRuntime(loc, "startswith/endswith arguments must be str or a tuple of str");
    const std::string& x = p.str();
    if (x.size() > s.size()) return false;
    return at_end ? s.compare(s.size() - x.size(), x.size(), x) == 0
                  : s.compare(0, x.size(), x) == 0;
  };
  if (arg.is_list()) {
    for (const Value& p : arg.list()) {
      if (one(p)) return true;
    }
    return false;
  }
  return one(arg);
}

// str.format with {} / {0} / {name} fields (no format specs).
std::string PyFormat(const std::string& fmt, const CallArgs& args, SourceLoc loc) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
    } else if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out.push_back('}');
      ++i;
    } else if (c == '{') {
      size_t close = fmt.find('}', i);
      if (close == std::string::npos)
        ThrowRuntime(loc, "format: single '{' encountered in format string");
      std::string field = fmt.substr(i + 1, close - i - 1);
      if (field.find_first_of(":!") != std::string::npos) {
        ThrowRuntime(loc, "format: format specs and conversions are not supported");
      }
      const Value* v = nullptr;
      int64_t idx = 0;
      if (field.empty()) {
        if (auto_index < args.positional.size()) v = &args.positional[auto_index];
        ++auto_index;
      } else if (ParseIntLiteral(field, &idx)) {
        if (idx >= 0 && static_cast<size_t>(idx) < args.positional.size())
          v = &args.positional[idx];
      } else {
        for (const auto& [k, kv] : args.keyword) {
          if (k == field) v = &kv;
        }
      }
      if (v == nullptr) ThrowRuntime(loc, "format: no argument for field {" + field + "}");
      AppendStr(*v, &out);
      i = close;
    } else if (c == '}') {
      ThrowRuntime(loc, "format: single '}' encountered in format string");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Value StrMethod(Interpreter& interp, const std::string& s, std::string_view name, const CallArgs& a,
                SourceLoc loc) {
  std::string storage;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const std::string* chars = OptStr(a.Take(0, "chars"), &storage, loc, "strip chars");
    return Value::Str(std::string(PyStrip(s, chars, name != "rstrip", name != "lstrip")));
  }
  if (name == "split" || name == "rsplit") {
    const std::string* sep = OptStr(a.Take(0, "sep"), &storage, loc, "split separator");
    if (sep != nullptr && sep->empty()) ThrowRuntime(loc, "split: empty separator");
    ValueList parts;
    for (std::string& p :
         PySplit(s, sep, OptInt(a.Take(1, "maxsplit"), -1, loc, "maxsplit"), name == "rsplit")) {
      parts.push_back(Value::Str(std::move(p)));
    }
    return Value::List(std::move(parts));
  }
  if (name == "startswith" || name == "endswith") {
    return Value::Bool(PrefixMatch(a.Take(0, "prefix"), s, name == "endswith", loc));
  }
  if (name == "upper") return Value::Str(PyUpper(s));
  if (name == "lower") return Value::Str(PyLower(s));
  if (name == "title") return Value::Str(PyTitle(s));
  if (name == "capitalize") return Value::Str(PyCapitalize(s));
  if (name == "replace") {
    std::string out = PyReplace(s, ToStr(a.Take(0, "old")), ToStr(a.Take(1, "new")),
                                OptInt(a.Take(2, "count"), -1, loc, "replace count"));
    interp.CheckSize(out.size(), loc);
    return Value::Str(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index") {
    std::string sub = ToStr(a.Take(0, "sub"));
    size_t hit = name == "rfind" ? s.rfind(sub) : s.find(sub);
    if (hit == std::string::npos) {
      if (name == "index") ThrowRuntime(loc, "substring not found");
      return Value::Int(-1);
    }
    return Value::Int(CodepointIndex(s, hit));
  }
  if (name == "count") {
    std::string sub = ToStr(a.Take(0, "sub"));
    if (sub.empty()) return Value::Int(static_cast<int64_t>(CodepointCount(s)) + 1);
    int64_t n = 0;
    for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size()))
      ++n;
    return Value::Int(n);
  }
  if (name == "format") return Value::Str(PyFormat(s, a, loc));
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const Value& item : interp.Iterate(a.Take(0, "iterable"), loc)) {
      if (!item.is_string())
        ThrowRuntime(loc, "join: expected str instance, " + TypeName(item) + " found");
      if (!first) out += s;
      first = false;
      out += item.str();
      interp.CheckSize(out.size(), loc);
    }
    return Value::Str(std::move(out));
  }
  if (name == "splitlines") {
    ValueList lines;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        lines.push_back(Value::Str(s.substr(start, i - start)));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    if (start < s.size()) lines.push_back(Value::Str(s.substr(start)));
    return Value::List(std::move(lines));
  }
  if (name == "isdigit")
    return Value::Bool(AllChars(s, [](int c) { return c >= '0' && c <= '9' ? 1 : 0; }));
  if (name == "isalpha") return Value::Bool(AllChars(s, [](int c) { return std::isalpha(c); }));
  if (name == "isalnum") return Value::Bool(AllChars(s, [](int c) { return std::isalnum(c); }));
  if (name == "isspace") return Value::Bool(AllChars(s, [](int c) { return std::isspace(c); }));
  if (name == "isupper" || name == "islower") {
    bool upper = name == "isupper";
    bool cased = false;
    for (unsigned char c : s) {
      if (std::isupper(c) || std::islower(c)) {
        cased = true;
        if ((std::isupper(c) != 0) != upper) return Value::Bool(false);
      }
    }
    return Value::Bool(cased);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    std::string x = ToStr(a.Take(0, "affix"));
    if (name == "removeprefix" && s.compare(0, x.size(), x) == 0)
      return Value::Str(s.substr(x.size()));
    if (name == "removesuffix" && x.size() <= s.size() &&
        s.compare(s.size() - x.size(), x.size(), x) == 0) {
      return Value::Str(s.substr(0, s.size() - x.size()));
    }
    return Value::Str(s);
  }
  ThrowRuntime(loc, "'str' object has no method '" + std::string(name) + "'");
}

Value ListMethod(Interpreter& interp, const Value& self, std::string_view name, const CallArgs& a,
                 SourceLoc loc) {
  ValueList& list = self.list();
  if (name == "append") {
    interp.CheckSize(list.size() + 1, loc);
    AllocationMeter::Charge(sizeof(Value));
    list.push_back(a.Take(0, "object"));
    return Value::None();
  }
  if (name == "extend") {
    ValueList more = interp.Iterate(a.Take(0, "iterable"), loc);
    interp.CheckSize(list.size() + more.size(), loc);
    AllocationMeter::Charge(more.size() * sizeof(Value));
    list.insert(list.end(), more.begin(), more.end());
    return Value::None();
  }
  if (name == "pop") {
    if (list.empty()) ThrowRuntime(loc, "pop from empty list");
    int64_t n = static_cast<int64_t>(list.size());
    int64_t i = OptInt(a.Take(0, "index"), -1, loc, "pop index");
    if (i < 0) i += n;
    if (i < 0 || i >= n) ThrowRuntime(loc, "pop index out of range");
    Value v = list[i];
    list.erase(list.begin() + i);
    return v;
  }
  if (name == "insert") {
    int64_t n = static_cast<int64_t>(list.size());
    int64_t i = OptInt(a.Take(0, "index"), 0, loc, "insert index");
    if (i < 0) i = std::max<int64_t>(0, i + n);
    i = std::min(i, n);
    AllocationMeter::Charge(sizeof(Value));
    list.insert(list.begin() + i, a.Take(1, "object"));
    return Value::None();
  }
  if (name == "index" || name == "count") {
    Value x = a.Take(0, "value");
    int64_t n = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (Equals(list[i], x)) {
        if (name == "index") return Value::Int(static_cast<int64_t>(i));
        ++n;
      }
    }
    if (name == "index") ThrowRuntime(loc, Repr(x) + " is not in list");
    return Value::Int(n);
  }
  ThrowRuntime(loc, "'list' object has no method '" + std::string(name) + "'");
}

Value DictMethod(const Value& self, std::string_view name, const CallArgs& a, SourceLoc loc) {
  ValueDict& d = self.dict();
  if (name == "items" || name == "keys" || name == "values") {
    ValueList out;
    out.reserve(d.items.size());
    for (const auto& [k, v] : d.items) {
      if (name == "items")
        out.push_back(Value::Tuple({Value::Str(k), v}));
      else if (name == "keys")
        out.push_back(Value::Str(k));
      else
        out.push_back(v);
    }
    return Value::List(std::move(out));
  }
  if (name == "get") {
    Value key = a.Take(0, "key");
    if (key.is_string()) {
      if (const Value* v = d.Find(key.str())) return *v;
    }
    Value dflt = a.Take(1, "default");
    return dflt.is_undefined() ? Value::None() : dflt;
  }
  if (name == "update") {
    Value other = a.Take(0, "other");
    if (other.is_dict()) {
      ValueList::size_type n = other.dict().items.size();
      for (ValueList::size_type i = 0; i < n; ++i) {
        auto item = other.dict().items[i];
        d.Set(item.first, item.second);
      }
    } else if (!other.is_undefined()) {
      ThrowRuntime(loc, "dict.update: expected a mapping");
    }
    for (const auto& [k, v] : a.keyword) d.Set(k, v);
    return Value::None();
  }
  if (name == "copy") {
    Value out = Value::Dict();
    out.dict().items = d.items;
    return out;
  }
  ThrowRuntime(loc, "'dict' object has no method '" + std::string(name) + "'");
}

// ---- globals ------------------------------------------------------------------------------

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

Value Range(Interpreter&, const CallArgs& a, SourceLoc loc) {
  if (a.positional.empty() || a.positional.size() > 3)
    ThrowRuntime(loc, "range expected 1 to 3 arguments");
  int64_t v[3] = {0, 0, 1};
  for (size_t i = 0; i < a.positional.size(); ++i) {
    if (!a.positional[i].is_integral()) ThrowRuntime(loc, "range: arguments must be integers");
  }
  if (a.positional.size() == 1) {
    v[1] = a.positional[0].int_value();
  } else {
    v[0] = a.positional[0].int_value();
    v[1] = a.positional[1].int_value();
    if (a.positional.size() == 3) v[2] = a.positional[2].int_value();
  }
  if (v[2] == 0) ThrowRuntime(loc, "range() arg 3 must not be zero");
  ValueList out;
  for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) {
      ThrowRuntime(loc, "range too big (more than " + std::to_string(kMaxRange) + " items)");
    }
    out.push_back(Value::Int(i));
  }
  return Value::List(std::move(out));
}

void FillDict(ValueDict* d, const CallArgs& a, SourceLoc loc, std::string_view fn) {
  for (const Value& p : a.positional) {
    if (!p.is_dict())
      ThrowRuntime(loc, std::string(fn) + ": positional arguments must be mappings");
    for (const auto& [k, v] : p.dict().items) d->Set(k, v);
  }
  for (const auto& [k, v] : a.keyword) d->Set(k, v);
}

Value MakeNamespace(Interpreter&, const CallArgs& a, SourceLoc loc) {
  Value ns = Value::Namespace();
  FillDict(&ns.dict(), a, loc, "namespace");
  return ns;
}

Value MakeDict(Interpreter&, const CallArgs& a, SourceLoc loc) {
  Value d = Value::Dict();
  FillDict(&d.dict(), a, loc, "dict");
  return d;
}

Value RaiseException(Interpreter&, const CallArgs& a, SourceLoc loc) {
  std::string message = a.positional.empty() ? "raise_exception called" : ToStr(a.positional[0]);
  throw TemplateError(TemplateErrorKind::kRaised, loc, message);
}

Value StrftimeNow(Interpreter&, const CallArgs& a, SourceLoc loc) {
  if (a.positional.empty() || !a.positional[0].is_string()) {
    ThrowRuntime(loc, "strftime_now expects a format string");
  }
  const std::string& fmt = a.positional[0].str();
  if (fmt.size() > 256) ThrowRuntime(loc, "strftime_now: format string too long");
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  std::string buf(1024, '\0');
  size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
  if (n == 0 && !fmt.empty()) ThrowRuntime(loc, "strftime_now: could not format '" + fmt + "'");
  buf.resize(n);
  return Value::Str(std::move(buf));
}

void AddFunction(ValueDict* globals, const char* name,
                 Value (*fn)(Interpreter&, const CallArgs&, SourceLoc)) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->native = fn;
  globals->Set(name, Value::Function(std::move(c)));
}

}  // namespace

bool HasMethod(const Value& self, std::string_view name) {
  switch (self.kind()) {
    case ValueKind::kString:
      return StrMethods().count(name) != 0;
    case ValueKind::kList:
      return ListMethods().count(name) != 0;
    case ValueKind::kDict:  // hot (every message.role): a few compares beat hashing
      return name == "items" || name == "keys" || name == "values" || name == "get" ||
             name == "update" || name == "copy";
    default:
      return false;
  }
}

Value CallMethod(Interpreter& interp, const Value& self, std::string_view name,
                 const CallArgs& args, SourceLoc loc, bool* found) {
  *found = HasMethod(self, name);
  if (!*found) return Value();
  switch (self.kind()) {
    case ValueKind::kString:
      return StrMethod(interp, self.str(), name, args, loc);
    case ValueKind::kList:
      return ListMethod(interp, self, name, args, loc);
    default:
      return DictMethod(self, name, args, loc);
  }
}

void AddGlobalFunctions(ValueDict* globals) {
  AddFunction(globals, "range", Range);
  AddFunction(globals, "namespace", MakeNamespace);
  AddFunction(globals, "dict", MakeDict);
  AddFunction(globals, "raise_exception", RaiseException);
  AddFunction(globals, "strftime_now", StrftimeNow);
}

bool ParseIntLiteral(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  std::string text(s);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size()) return false;
  *out = v;
  return true;
}

}  // namespace kiln::jinja
