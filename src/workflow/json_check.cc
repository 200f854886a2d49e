#include "workflow/json_check.h"

#include <cmath>

namespace kiln::workflow {
namespace {

bool HasType(const Json& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "integer") {
    return v.is_number_integer() ||
           (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  }
  if (t == "number") return v.is_number();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  return true;
}

size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

class Checker {
 public:
  explicit Checker(const Json& root) : root_(root) {}

  std::string Check(const Json& v, const Json& s, const std::string& path, int depth) {
    if (depth > 64) return path + ": schema nests too deep";
    if (s.is_boolean()) return s.get<bool>() ? "" : path + ": no value is allowed here";
    if (!s.is_object()) return "";
    if (s.contains("$ref") && s["$ref"].is_string()) {
      const Json* target = Resolve(s["$ref"].get<std::string>());
      if (target == nullptr) return path + ": unresolvable $ref " + s["$ref"].get<std::string>();
      std::string e = Check(v, *target, path, depth + 1);
      if (!e.empty()) return e;
    }
    if (const auto t = s.find("type"); t != s.end()) {
      bool ok = false;
      if (t->is_string()) ok = HasType(v, t->get<std::string>());
      if (t->is_array()) {
        for (const auto& x : *t) ok = ok || (x.is_string() && HasType(v, x.get<std::string>()));
      }
      if (!ok) return path + ": expected type " + t->dump() + ", got " + v.type_name();
    }
    if (const auto e = s.find("enum"); e != s.end() && e->is_array()) {
      bool ok = false;
      for (const auto& x : *e) ok = ok || x == v;
      if (!ok) return path + ": " + v.dump() + " is not one of " + e->dump();
    }
    if (const auto c = s.find("const"); c != s.end() && *c != v) {
      return path + ": must equal " + c->dump();
    }
    if (v.is_object()) {
      if (std::string e = CheckObject(v, s, path, depth); !e.empty()) return e;
    }
    if (v.is_array()) {
      if (const auto m = s.find("minItems");
          m != s.end() && m->is_number() && v.size() < m->get<double>()) {
        return path + ": fewer than " + m->dump() + " items";
      }
      if (const auto m = s.find("maxItems");
          m != s.end() && m->is_number() && v.size() > m->get<double>()) {
        return path + ": more than " + m->dump() + " items";
      }
      if (const auto items = s.find("items"); items != s.end()) {
        for (size_t i = 0; i < v.size(); ++i) {
          std::string e = Check(v[i], *items, path + "/" + std::to_string(i), depth + 1);
          if (!e.empty()) return e;
        }
      }
    }
    if (v.is_string()) {
      const size_t len = Utf8Length(v.get<std::string>());
      if (const auto m = s.find("minLength");
          m != s.end() && m->is_number() && len < m->get<double>()) {
        return path + ": shorter than " + m->dump() + " characters";
      }
      if (const auto m = s.find("maxLength");
          m != s.end() && m->is_number() && len > m->get<double>()) {
        return path + ": longer than " + m->dump() + " characters";
      }
    }
    if (v.is_number()) {
      const double x = v.get<double>();
      auto bound = [&](const char* key, auto cmp) {
        const auto m = s.find(key);
        return m != s.end() && m->is_number() && cmp(x, m->template get<double>());
      };
      if (bound("minimum", std::less<double>())) return path + ": below minimum";
      if (bound("maximum", std::greater<double>())) return path + ": above maximum";
      if (bound("exclusiveMinimum", std::less_equal<double>()))
        return path + ": not above exclusiveMinimum";
      if (bound("exclusiveMaximum", std::greater_equal<double>()))
        return path + ": not below exclusiveMaximum";
    }
    if (const auto all = s.find("allOf"); all != s.end() && all->is_array()) {
      for (const auto& sub : *all) {
        std::string e = Check(v, sub, path, depth + 1);
        if (!e.empty()) return e;
      }
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      const auto any = s.find(key);
      if (any == s.end() || !any->is_array()) continue;
      int matches = 0;
      std::string first;
      for (const auto& sub : *any) {
        std::string e = Check(v, sub, path, depth + 1);
        if (e.empty()) ++matches;
        if (!e.empty() && first.empty()) first = e;
      }
      if (matches == 0) return path + ": matches no " + key + " branch (" + first + ")";
      if (std::string(key) == "oneOf" && matches > 1)
        return path + ": matches several oneOf branches";
    }
    return "";
  }

 private:
  std::string CheckObject(const Json& v, const Json& s, const std::string& path, int depth) {
    if (const auto req = s.find("required"); req != s.end() && req->is_array()) {
      for (const auto& k : *req) {
        if (k.is_string() && !v.contains(k.get<std::string>())) {
          return path + ": missing required property '" + k.get<std::string>() + "'";
        }
      }
    }
    const auto props = s.find("properties");
    const auto extra = s.find("additionalProperties");
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string p = path + "/" + it.key();
      if (props != s.end() && props->is_object() && props->contains(it.key())) {
        std::string e = Check(it.value(), (*props)[it.key()], p, depth + 1);
        if (!e.empty()) return e;
      } else if (extra != s.end()) {
        std::string e = Check(it.value(), *extra, p, depth + 1);
        if (!e.empty()) return extra->is_boolean() ? p + ": additional property not allowed" : e;
      }
    }
    return "";
  }

  const Json* Resolve(const std::string& ref) const {
    if (ref == "#") return &root_;
    if (ref.rfind("#/", 0) != 0) return nullptr;
    const Json* cur = &root_;
    size_t pos = 2;
    while (pos <= ref.size()) {
      const size_t next = ref.find('/', pos);
      const std::string key =
          ref.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
      if (!cur->is_object() || !cur->contains(key)) return nullptr;
      cur = &(*cur)[key];
      if (next == std::string::npos) break;
      pos = next + 1;
    }
    return cur;
  }

  const Json& root_;
};

}  // namespace

std::string CheckJsonSchema(const Json& value, const Json& schema) {
  Checker c(schema);
  std::string e = c.Check(value, schema, "", 0);
  if (!e.empty() && e[0] == ':') e = "(root)" + e;
  return e;
}

}  // namespace kiln::workflow
