// Filters and tests (builtins.h).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <unordered_map>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/text.h"

namespace kiln::jinja {
namespace {

using FilterFn = Value (*)(Interpreter&, const Value&, const CallArgs&, SourceLoc);
using TestFn = bool (*)(Interpreter&, const Value&, const CallArgs&, SourceLoc);

// ---- helpers ------------------------------------------------------------------------------

int64_t ArgInt(const Value& v, int64_t dflt, std::string_view what, SourceLoc loc) {
  if (v.is_undefined() || v.is_none()) return dflt;
  if (!v.is_integral()) ThrowRuntime(loc, std::string(what) + " must be an integer");
  return v.int_value();
}

bool ArgBool(const Value& v, bool dflt) { return v.is_undefined() ? dflt : Truthy(v); }

std::string ArgStr(const Value& v, std::string_view dflt) {
  return v.is_undefined() ? std::string(dflt) : ToStr(v);
}

// Jinja's make_attrgetter: "a.b.0" walks attributes/items.
Value GetAttrPath(Interpreter& interp, const Value& obj, const Value& path, SourceLoc loc) {
  if (path.is_integral()) return interp.GetItem(obj, path, loc);
  std::string p = ToStr(path);
  Value cur = obj;
  size_t start = 0;
  while (true) {
    size_t dot = p.find('.', start);
    std::string part = p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    int64_t idx = 0;
    if (!part.empty() && ParseIntLiteral(part, &idx)) {
      cur = interp.GetItem(cur, Value::Int(idx), loc);
    } else {
      cur = interp.GetItem(cur, Value::Str(part), loc);
    }
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Sort key folding for case-insensitive comparisons.
Value FoldCase(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::Str(PyLower(v.str()));
  return v;
}

Value StrValue(std::string s) { return Value::Str(std::move(s)); }

// ---- filters ------------------------------------------------------------------------------

Value FTrim(Interpreter&, const Value& in, const CallArgs& a, SourceLoc) {
  Value chars = a.Take(0, "chars");
  std::string s = ToStr(in);
  if (chars.is_undefined() || chars.is_none())
    return StrValue(std::string(PyStrip(s, nullptr, true, true)));
  std::string c = ToStr(chars);
  return StrValue(std::string(PyStrip(s, &c, true, true)));
}

Value FToJson(Interpreter&, const Value& in, const CallArgs& a, SourceLoc loc) {
  JsonFormat f;
  Value indent = a.Take(0, "indent");
  if (indent.is_integral())
    f.indent = static_cast<int>(std::clamp<int64_t>(indent.int_value(), 0, 64));
  else if (indent.is_string())
    ThrowRuntime(loc, "tojson: string indent is not supported");
  f.ensure_ascii = ArgBool(a.Take(99, "ensure_ascii"), false);
  f.sort_keys = ArgBool(a.Take(99, "sort_keys"), false);
  Value seps = a.Take(99, "separators");
  if (seps.is_list() && seps.list().size() == 2) {
    f.custom_separators = true;
    f.item_separator = ToStr(seps.list()[0]);
    f.key_separator = ToStr(seps.list()[1]);
  }
  std::string out;
  ToJson(in, f, loc, &out);
  return StrValue(std::move(out));
}

int64_t Length(const Value& v, SourceLoc loc) {
  switch (v.kind()) {
    case ValueKind::kString:
      return static_cast<int64_t>(CodepointCount(v.str()));
    case ValueKind::kList:
      return static_cast<int64_t>(v.list().size());
    case ValueKind::kDict:
      return static_cast<int64_t>(v.dict().items.size());
    case ValueKind::kUndefined:
      return 0;
    default:
      ThrowRuntime(loc, "object of type '" + TypeName(v) + "' has no len()");
  }
}

Value FLength(Interpreter&, const Value& in, const CallArgs&, SourceLoc loc) {
  return Value::Int(Length(in, loc));
}

Value FItems(Interpreter&, const Value& in, const CallArgs&, SourceLoc loc) {
  if (in.is_undefined()) return Value::List();
  if (!in.is_dict())
    ThrowRuntime(loc, "items: can only get item pairs from a mapping, not " + TypeName(in));
  ValueList pairs;
  for (const auto& [k, v] : in.dict().items) pairs.push_back(Value::Tuple({Value::Str(k), v}));
  return Value::List(std::move(pairs));
}

Value FJoin(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  std::string sep = ArgStr(a.Take(0, "d"), "");
  Value attr = a.Take(1, "attribute");
  std::string out;
  bool first = true;
  for (const Value& item : interp.Iterate(in, loc)) {
    if (!first) out += sep;
    first = false;
    AppendStr(attr.is_undefined() || attr.is_none() ? item : GetAttrPath(interp, item, attr, loc),
              &out);
    interp.CheckSize(out.size(), loc);
  }
  return StrValue(std::move(out));
}

Value FUpper(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  return StrValue(PyUpper(ToStr(in)));
}
Value FLower(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  return StrValue(PyLower(ToStr(in)));
}
Value FCapitalize(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  return StrValue(PyCapitalize(ToStr(in)));
}
// Jinja's title filter (not str.title): words start after runs of whitespace, '-', '(', '{', '[',
// '<'; each word is capitalized.
Value FTitle(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  std::string s = ToStr(in);
  std::string out;
  bool word_start = true;
  for (char c : s) {
    bool sep = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
               c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      out.push_back(c);
      word_start = true;
      continue;
    }
    if (word_start)
      out += PyUpper(std::string_view(&c, 1));
    else
      out += PyLower(std::string_view(&c, 1));
    word_start = false;
  }
  return StrValue(std::move(out));
}

Value FReplace(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  std::string out = PyReplace(ToStr(in), ToStr(a.Take(0, "old")), ToStr(a.Take(1, "new")),
                              ArgInt(a.Take(2, "count"), -1, "replace count", loc));
  interp.CheckSize(out.size(), loc);
  return StrValue(std::move(out));
}

Value FDefault(Interpreter&, const Value& in, const CallArgs& a, SourceLoc) {
  Value dflt = a.Take(0, "default_value");
  if (dflt.is_undefined()) dflt = Value::Str("");
  bool boolean = ArgBool(a.Take(1, "boolean"), false);
  if (in.is_undefined() || (boolean && !Truthy(in))) return dflt;
  return in;
}

Value FFirst(Interpreter& interp, const Value& in, const CallArgs&, SourceLoc loc) {
  ValueList items = interp.Iterate(in, loc);
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

Value FLast(Interpreter& interp, const Value& in, const CallArgs&, SourceLoc loc) {
  ValueList items = interp.Iterate(in, loc);
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Value FList(Interpreter& interp, const Value& in, const CallArgs&, SourceLoc loc) {
  return Value::List(interp.Iterate(in, loc));
}

Value FString(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  return StrValue(ToStr(in));
}

Value FInt(Interpreter&, const Value& in, const CallArgs& a, SourceLoc loc) {
  Value dflt = a.Take(0, "default");
  if (dflt.is_undefined()) dflt = Value::Int(0);
  int64_t base = ArgInt(a.Take(1, "base"), 10, "int base", loc);
  if (in.is_integral()) return Value::Int(in.int_value());
  if (in.kind() == ValueKind::kFloat) {
    double d = in.float_value();
    if (!std::isfinite(d)) return dflt;  // (Python raises; Jinja's filter falls back)
    // Python would give a big integer; integers here are 64-bit: an error, never a wrong value.
    if (std::fabs(d) > 9.2e18) ThrowRuntime(loc, "int: value out of the 64-bit integer range");
    return Value::Int(static_cast<int64_t>(d));
  }
  if (in.is_string()) {
    std::string s(PyStrip(in.str(), nullptr, true, true));
    std::string digits;
    for (char c : s) {
      if (c != '_') digits.push_back(c);
    }
    if (!digits.empty()) {
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
      if (end == digits.c_str() + digits.size()) {
        if (errno == ERANGE) ThrowRuntime(loc, "int: value out of the 64-bit integer range");
        if (errno == 0) return Value::Int(v);
      }
      double d = std::strtod(digits.c_str(), &end);
      if (base == 10 && end == digits.c_str() + digits.size() && std::isfinite(d)) {
        if (std::fabs(d) >= 9.2e18) {
          ThrowRuntime(loc, "int: value out of the 64-bit integer range");
        }
        return Value::Int(static_cast<int64_t>(d));
      }
    }
  }
  return dflt;
}

Value FFloat(Interpreter&, const Value& in, const CallArgs& a, SourceLoc) {
  Value dflt = a.Take(0, "default");
  if (dflt.is_undefined()) dflt = Value::Float(0.0);
  if (in.is_number()) return Value::Float(in.float_value());
  if (in.is_string()) {
    std::string s(PyStrip(in.str(), nullptr, true, true));
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end == s.c_str() + s.size()) return Value::Float(d);
  }
  return dflt;
}

Value FAbs(Interpreter&, const Value& in, const CallArgs&, SourceLoc loc) {
  if (in.kind() == ValueKind::kFloat) return Value::Float(std::fabs(in.float_value()));
  if (in.is_integral()) {
    if (in.int_value() == INT64_MIN) ThrowRuntime(loc, "integer overflow");
    return Value::Int(std::llabs(in.int_value()));
  }
  ThrowRuntime(loc, "bad operand type for abs(): '" + TypeName(in) + "'");
}

Value FRound(Interpreter&, const Value& in, const CallArgs& a, SourceLoc loc) {
  if (!in.is_number()) ThrowRuntime(loc, "round: expected a number, got " + TypeName(in));
  int64_t precision = ArgInt(a.Take(0, "precision"), 0, "round precision", loc);
  std::string method = ArgStr(a.Take(1, "method"), "common");
  double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(precision, -300, 300)));
  double x = in.float_value() * scale;
  double r;
  if (method == "common")
    r = std::nearbyint(x);  // Python round(): half to even
  else if (method == "ceil")
    r = std::ceil(x);
  else if (method == "floor")
    r = std::floor(x);
  else
    ThrowRuntime(loc, "round: method must be 'common', 'ceil' or 'floor'");
  return Value::Float(r / scale);
}

Value FMap(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  ValueList out;
  Value attr = a.Take(99, "attribute");
  if (!attr.is_undefined()) {
    Value dflt = a.Take(99, "default");
    for (const Value& item : interp.Iterate(in, loc)) {
      Value v = GetAttrPath(interp, item, attr, loc);
      out.push_back(v.is_undefined() && !dflt.is_undefined() ? dflt : v);
    }
    return Value::List(std::move(out));
  }
  if (a.positional.empty()) ThrowRuntime(loc, "map: expected a filter name or attribute=");
  std::string filter = ToStr(a.positional[0]);
  if (!IsKnownFilter(filter)) ThrowRuntime(loc, "map: unknown filter '" + filter + "'");
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const Value& item : interp.Iterate(in, loc))
    out.push_back(ApplyFilter(interp, filter, item, rest, loc));
  return Value::List(std::move(out));
}

// select/reject/selectattr/rejectattr share this: `with_attr` takes the attribute first.
Value SelectImpl(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc,
                 bool with_attr, bool keep) {
  size_t next = 0;
  Value attr;
  if (with_attr) {
    if (a.positional.empty()) ThrowRuntime(loc, "selectattr/rejectattr: missing attribute name");
    attr = a.positional[next++];
  }
  std::string test;
  if (next < a.positional.size()) test = ToStr(a.positional[next++]);
  if (!test.empty() && !IsKnownTest(test)) ThrowRuntime(loc, "unknown test '" + test + "'");
  CallArgs test_args;
  test_args.positional.assign(a.positional.begin() + next, a.positional.end());
  ValueList out;
  for (const Value& item : interp.Iterate(in, loc)) {
    Value subject = with_attr ? GetAttrPath(interp, item, attr, loc) : item;
    bool ok = test.empty() ? Truthy(subject) : ApplyTest(interp, test, subject, test_args, loc);
    if (ok == keep) out.push_back(item);
  }
  return Value::List(std::move(out));
}

Value FSelect(Interpreter& i, const Value& in, const CallArgs& a, SourceLoc l) {
  return SelectImpl(i, in, a, l, false, true);
}
Value FReject(Interpreter& i, const Value& in, const CallArgs& a, SourceLoc l) {
  return SelectImpl(i, in, a, l, false, false);
}
Value FSelectAttr(Interpreter& i, const Value& in, const CallArgs& a, SourceLoc l) {
  return SelectImpl(i, in, a, l, true, true);
}
Value FRejectAttr(Interpreter& i, const Value& in, const CallArgs& a, SourceLoc l) {
  return SelectImpl(i, in, a, l, true, false);
}

Value FUnique(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  bool case_sensitive = ArgBool(a.Take(0, "case_sensitive"), false);
  Value attr = a.Take(1, "attribute");
  ValueList out;
  ValueList seen;
  for (const Value& item : interp.Iterate(in, loc)) {
    Value key = FoldCase(
        attr.is_undefined() || attr.is_none() ? item : GetAttrPath(interp, item, attr, loc),
        case_sensitive);
    bool dup = false;
    for (const Value& s : seen) dup = dup || Equals(s, key);
    if (!dup) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value::List(std::move(out));
}

Value FSort(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  bool reverse = ArgBool(a.Take(0, "reverse"), false);
  bool case_sensitive = ArgBool(a.Take(1, "case_sensitive"), false);
  Value attr = a.Take(2, "attribute");
  ValueList items = interp.Iterate(in, loc);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i) {
    Value key =
        attr.is_undefined() || attr.is_none() ? items[i] : GetAttrPath(interp, items[i], attr, loc);
    keyed.emplace_back(FoldCase(key, case_sensitive), i);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? LessThan(y.first, x.first, loc) : LessThan(x.first, y.first, loc);
  });
  ValueList out;
  for (const auto& k : keyed) out.push_back(items[k.second]);
  return Value::List(std::move(out));
}

Value FDictSort(Interpreter&, const Value& in, const CallArgs& a, SourceLoc loc) {
  if (!in.is_dict()) ThrowRuntime(loc, "dictsort: expected a mapping, got " + TypeName(in));
  bool case_sensitive = ArgBool(a.Take(0, "case_sensitive"), false);
  std::string by = ArgStr(a.Take(1, "by"), "key");
  bool reverse = ArgBool(a.Take(2, "reverse"), false);
  if (by != "key" && by != "value") ThrowRuntime(loc, "dictsort: 'by' must be 'key' or 'value'");
  ValueList pairs;
  for (const auto& [k, v] : in.dict().items) pairs.push_back(Value::Tuple({Value::Str(k), v}));
  size_t idx = by == "key" ? 0 : 1;
  std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
    Value kx = FoldCase(x.list()[idx], case_sensitive);
    Value ky = FoldCase(y.list()[idx], case_sensitive);
    return reverse ? LessThan(ky, kx, loc) : LessThan(kx, ky, loc);
  });
  return Value::List(std::move(pairs));
}

Value FReverse(Interpreter& interp, const Value& in, const CallArgs&, SourceLoc loc) {
  ValueList items = interp.Iterate(in, loc);
  std::reverse(items.begin(), items.end());
  if (in.is_string()) {
    std::string out;
    for (const Value& c : items) out += c.str();
    return StrValue(std::move(out));
  }
  return Value::List(std::move(items));
}

Value FSafe(Interpreter&, const Value& in, const CallArgs&, SourceLoc) { return in; }

Value FEscape(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  std::string out;
  for (char c : ToStr(in)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return StrValue(std::move(out));
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}

Value FIndent(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  Value width = a.Take(0, "width");
  std::string pad = width.is_string()
                        ? width.str()
                        : std::string(static_cast<size_t>(std::clamp<int64_t>(
                                          ArgInt(width, 4, "indent width", loc), 0, 1024)),
                                      ' ');
  bool first = ArgBool(a.Take(1, "first"), false);
  bool blank = ArgBool(a.Take(2, "blank"), false);
  std::vector<std::string> lines = SplitLines(ToStr(in) + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += pad;
    }
    out += lines[i];
    interp.CheckSize(out.size(), loc);
  }
  if (first) out = pad + out;
  return StrValue(std::move(out));
}

Value FWordCount(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  std::string s = ToStr(in);
  int64_t n = 0;
  bool in_word = false;
  for (unsigned char c : s) {
    bool w = std::isalnum(c) || c == '_' || c >= 0x80;
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::Int(n);
}

Value FBatch(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  int64_t size = ArgInt(a.Take(0, "linecount"), 1, "batch size", loc);
  if (size <= 0) ThrowRuntime(loc, "batch: size must be positive");
  Value fill = a.Take(1, "fill_with");
  ValueList out;
  ValueList cur;
  for (const Value& item : interp.Iterate(in, loc)) {
    cur.push_back(item);
    if (static_cast<int64_t>(cur.size()) == size) {
      out.push_back(Value::List(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (!fill.is_undefined() && !fill.is_none()) {
      while (static_cast<int64_t>(cur.size()) < size) cur.push_back(fill);
    }
    out.push_back(Value::List(std::move(cur)));
  }
  return Value::List(std::move(out));
}

Value MinMax(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc,
             bool want_max) {
  bool case_sensitive = ArgBool(a.Take(0, "case_sensitive"), false);
  Value attr = a.Take(1, "attribute");
  ValueList items = interp.Iterate(in, loc);
  if (items.empty())
    return Value::Undefined(want_max ? "No aggregated item, sequence was empty."
                                     : "No aggregated item, sequence was empty.");
  size_t best = 0;
  auto key = [&](size_t i) {
    return FoldCase(
        attr.is_undefined() || attr.is_none() ? items[i] : GetAttrPath(interp, items[i], attr, loc),
        case_sensitive);
  };
  for (size_t i = 1; i < items.size(); ++i) {
    bool better = want_max ? LessThan(key(best), key(i), loc) : LessThan(key(i), key(best), loc);
    if (better) best = i;
  }
  return items[best];
}

Value FMin(Interpreter& i, const Value& in, const CallArgs& a, SourceLoc l) {
  return MinMax(i, in, a, l, false);
}
Value FMax(Interpreter& i, const Value& in, const CallArgs& a, SourceLoc l) {
  return MinMax(i, in, a, l, true);
}

Value FSum(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  Value attr = a.Take(0, "attribute");
  Value total = a.Take(1, "start");
  if (total.is_undefined()) total = Value::Int(0);
  for (const Value& item : interp.Iterate(in, loc)) {
    Value v = attr.is_undefined() || attr.is_none() ? item : GetAttrPath(interp, item, attr, loc);
    if (!v.is_number() || !total.is_number())
      ThrowRuntime(loc, "sum: unsupported operand type " + TypeName(v));
    if (v.is_integral() && total.is_integral())
      total = Value::Int(total.int_value() + v.int_value());
    else
      total = Value::Float(total.float_value() + v.float_value());
  }
  return total;
}

Value FAttr(Interpreter& interp, const Value& in, const CallArgs& a, SourceLoc loc) {
  return interp.GetAttr(in, ToStr(a.Take(0, "name")), loc);
}

Value FPprint(Interpreter&, const Value& in, const CallArgs&, SourceLoc) {
  return StrValue(Repr(in));
}

Value FCenter(Interpreter&, const Value& in, const CallArgs& a, SourceLoc loc) {
  std::string s = ToStr(in);
  int64_t width = std::min<int64_t>(ArgInt(a.Take(0, "width"), 80, "center width", loc), 1 << 20);
  int64_t len = static_cast<int64_t>(CodepointCount(s));
  if (width <= len) return StrValue(s);
  int64_t total = width - len;
  int64_t left = total / 2 + (total & width & 1);
  return StrValue(std::string(left, ' ') + s + std::string(total - left, ' '));
}

// "%s" % args (printf-style formatting of the `format` filter): %s %r %d %i %f %%.
Value FFormat(Interpreter&, const Value& in, const CallArgs& a, SourceLoc loc) {
  std::string fmt = ToStr(in);
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (i + 1 >= fmt.size()) ThrowRuntime(loc, "format: incomplete format");
    char c = fmt[++i];
    if (c == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= a.positional.size())
      ThrowRuntime(loc, "format: not enough arguments for format string");
    const Value& v = a.positional[next++];
    switch (c) {
      case 's':
        out += ToStr(v);
        break;
      case 'r':
        out += Repr(v);
        break;
      case 'd':
      case 'i':
        if (!v.is_number()) ThrowRuntime(loc, "format: %d needs a number");
        out += std::to_string(v.kind() == ValueKind::kFloat ? static_cast<int64_t>(v.float_value())
                                                            : v.int_value());
        break;
      case 'f': {
        if (!v.is_number()) ThrowRuntime(loc, "format: %f needs a number");
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%f", v.float_value());
        out += buf;
        break;
      }
      default:
        ThrowRuntime(loc, std::string("format: unsupported conversion %") + c);
    }
  }
  return StrValue(std::move(out));
}

const std::unordered_map<std::string_view, FilterFn>& Filters() {
  static const auto* filters = new std::unordered_map<std::string_view, FilterFn>{
      {"trim", FTrim},
      {"tojson", FToJson},
      {"length", FLength},
      {"count", FLength},
      {"items", FItems},
      {"join", FJoin},
      {"upper", FUpper},
      {"lower", FLower},
      {"capitalize", FCapitalize},
      {"title", FTitle},
      {"replace", FReplace},
      {"default", FDefault},
      {"d", FDefault},
      {"first", FFirst},
      {"last", FLast},
      {"list", FList},
      {"string", FString},
      {"int", FInt},
      {"float", FFloat},
      {"abs", FAbs},
      {"round", FRound},
      {"map", FMap},
      {"select", FSelect},
      {"reject", FReject},
      {"selectattr", FSelectAttr},
      {"rejectattr", FRejectAttr},
      {"unique", FUnique},
      {"sort", FSort},
      {"dictsort", FDictSort},
      {"reverse", FReverse},
      {"safe", FSafe},
      {"e", FEscape},
      {"escape", FEscape},
      {"forceescape", FEscape},
      {"indent", FIndent},
      {"wordcount", FWordCount},
      {"batch", FBatch},
      {"min", FMin},
      {"max", FMax},
      {"sum", FSum},
      {"attr", FAttr},
      {"pprint", FPprint},
      {"center", FCenter},
      {"format", FFormat},
  };
  return *filters;
}

// ---- tests --------------------------------------------------------------------------------

const Value& Arg0(const CallArgs& a, SourceLoc loc, std::string_view test) {
  if (a.positional.empty()) ThrowRuntime(loc, "test '" + std::string(test) + "' needs an argument");
  return a.positional[0];
}

bool TDefined(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return !v.is_undefined();
}
bool TUndefined(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.is_undefined();
}
bool TNone(Interpreter&, const Value& v, const CallArgs&, SourceLoc) { return v.is_none(); }
bool TString(Interpreter&, const Value& v, const CallArgs&, SourceLoc) { return v.is_string(); }
bool TNumber(Interpreter&, const Value& v, const CallArgs&, SourceLoc) { return v.is_number(); }
bool TInteger(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.kind() == ValueKind::kInt;
}
bool TFloat(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.kind() == ValueKind::kFloat;
}
bool TMapping(Interpreter&, const Value& v, const CallArgs&, SourceLoc) { return v.is_dict(); }
bool TIterable(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
bool TSequence(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
}
bool TBoolean(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.kind() == ValueKind::kBool;
}
bool TTrue(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.kind() == ValueKind::kBool && v.bool_value();
}
bool TFalse(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.kind() == ValueKind::kBool && !v.bool_value();
}
bool TCallable(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.kind() == ValueKind::kCallable || v.is_undefined();  // jinja2's Undefined has __call__
}
bool TEq(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return Equals(v, Arg0(a, l, "=="));
}
bool TNe(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return !Equals(v, Arg0(a, l, "!="));
}
bool TLt(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return LessThan(v, Arg0(a, l, "<"), l);
}
bool TLe(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return !LessThan(Arg0(a, l, "<="), v, l);
}
bool TGt(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return LessThan(Arg0(a, l, ">"), v, l);
}
bool TGe(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return !LessThan(v, Arg0(a, l, ">="), l);
}
bool TIn(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  return Contains(Arg0(a, l, "in"), v, l);
}
bool TSameAs(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  const Value& o = Arg0(a, l, "sameas");
  if (v.kind() != o.kind()) return false;
  if (v.is_none() || v.is_undefined()) return true;
  if (v.kind() == ValueKind::kBool) return v.bool_value() == o.bool_value();
  if (v.is_list() || v.is_dict() || v.kind() == ValueKind::kNamespace ||
      v.kind() == ValueKind::kCallable) {
    return v.identity() == o.identity();
  }
  return Equals(v, o);
}
int64_t IntOf(const Value& v, SourceLoc loc, std::string_view test) {
  if (!v.is_integral())
    ThrowRuntime(loc, "test '" + std::string(test) + "' needs an integer, got " + TypeName(v));
  return v.int_value();
}
bool TOdd(Interpreter&, const Value& v, const CallArgs&, SourceLoc l) {
  return IntOf(v, l, "odd") % 2 != 0;
}
bool TEven(Interpreter&, const Value& v, const CallArgs&, SourceLoc l) {
  return IntOf(v, l, "even") % 2 == 0;
}
bool TDivisibleBy(Interpreter&, const Value& v, const CallArgs& a, SourceLoc l) {
  int64_t d = IntOf(Arg0(a, l, "divisibleby"), l, "divisibleby");
  if (d == 0) ThrowRuntime(l, "divisibleby: division by zero");
  return IntOf(v, l, "divisibleby") % d == 0;
}
bool TLowerCase(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.is_string() && PyLower(v.str()) == v.str();
}
bool TUpperCase(Interpreter&, const Value& v, const CallArgs&, SourceLoc) {
  return v.is_string() && PyUpper(v.str()) == v.str();
}
bool TEscaped(Interpreter&, const Value&, const CallArgs&, SourceLoc) { return false; }

const std::unordered_map<std::string_view, TestFn>& Tests() {
  static const auto* tests = new std::unordered_map<std::string_view, TestFn>{
      {"defined", TDefined},
      {"undefined", TUndefined},
      {"none", TNone},
      {"string", TString},
      {"number", TNumber},
      {"integer", TInteger},
      {"float", TFloat},
      {"mapping", TMapping},
      {"iterable", TIterable},
      {"sequence", TSequence},
      {"boolean", TBoolean},
      {"true", TTrue},
      {"false", TFalse},
      {"callable", TCallable},
      {"equalto", TEq},
      {"eq", TEq},
      {"==", TEq},
      {"ne", TNe},
      {"!=", TNe},
      {"lt", TLt},
      {"lessthan", TLt},
      {"<", TLt},
      {"le", TLe},
      {"<=", TLe},
      {"gt", TGt},
      {"greaterthan", TGt},
      {">", TGt},
      {"ge", TGe},
      {">=", TGe},
      {"in", TIn},
      {"sameas", TSameAs},
      {"odd", TOdd},
      {"even", TEven},
      {"divisibleby", TDivisibleBy},
      {"lower", TLowerCase},
      {"upper", TUpperCase},
      {"escaped", TEscaped},
  };
  return *tests;
}

}  // namespace

bool IsKnownFilter(std::string_view name) { return Filters().count(name) != 0; }
bool IsKnownTest(std::string_view name) { return Tests().count(name) != 0; }

Value ApplyFilter(Interpreter& interp, std::string_view name, const Value& input,
                  const CallArgs& args, SourceLoc loc) {
  auto it = Filters().find(name);
  if (it == Filters().end()) ThrowRuntime(loc, "unknown filter '" + std::string(name) + "'");
  return it->second(interp, input, args, loc);
}

bool ApplyTest(Interpreter& interp, std::string_view name, const Value& input, const CallArgs& args,
               SourceLoc loc) {
  auto it = Tests().find(name);
  if (it == Tests().end()) ThrowRuntime(loc, "unknown test '" + std::string(name) + "'");
  return it->second(interp, input, args, loc);
}

}  // namespace kiln::jinja
